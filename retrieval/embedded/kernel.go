package embedded

import (
	"github.com/viterin/vek/vek32"
	"golang.org/x/sys/cpu"
)

// Kernel names, for Stats and benchmarks.
const (
	kernelAVX2 = "avx2"
	kernelGo   = "go"
)

// pickKernel returns the float32 dot product to use on this CPU: viterin/vek's
// AVX2+FMA assembly where available, else a pure-Go loop with four
// accumulators. (vek's own fallback is a plain one-accumulator loop, about 2×
// slower than ours.)
func pickKernel(forceGo bool) (string, func(a, b []float32) float32) {
	if !forceGo && cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		return kernelAVX2, vek32.Dot
	}
	return kernelGo, dotGo
}

// dotGo is the portable float32 kernel. Four accumulators break the add
// dependency chain, which roughly doubles throughput over a naive loop.
func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		s0 += a[i]*b[i] + a[i+4]*b[i+4]
		s1 += a[i+1]*b[i+1] + a[i+5]*b[i+5]
		s2 += a[i+2]*b[i+2] + a[i+6]*b[i+6]
		s3 += a[i+3]*b[i+3] + a[i+7]*b[i+7]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}
