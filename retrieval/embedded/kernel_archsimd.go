//go:build goexperiment.simd && amd64

package embedded

import "simd/archsimd"

// haveArchSIMD reports whether this build has the Go 1.26 simd/archsimd kernel
// (only with GOEXPERIMENT=simd); it is measured in the benchmarks.
const haveArchSIMD = true

// dotArchSIMD is the float32 dot product with simd/archsimd: four 8-lane FMA
// accumulators. Callers must have checked archsimd.X86.AVX2() (and FMA).
func dotArchSIMD(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 archsimd.Float32x8
	i := 0
	for ; i+32 <= len(a); i += 32 {
		s0 = archsimd.LoadFloat32x8Slice(a[i:]).MulAdd(archsimd.LoadFloat32x8Slice(b[i:]), s0)
		s1 = archsimd.LoadFloat32x8Slice(a[i+8:]).MulAdd(archsimd.LoadFloat32x8Slice(b[i+8:]), s1)
		s2 = archsimd.LoadFloat32x8Slice(a[i+16:]).MulAdd(archsimd.LoadFloat32x8Slice(b[i+16:]), s2)
		s3 = archsimd.LoadFloat32x8Slice(a[i+24:]).MulAdd(archsimd.LoadFloat32x8Slice(b[i+24:]), s3)
	}
	for ; i+8 <= len(a); i += 8 {
		s0 = archsimd.LoadFloat32x8Slice(a[i:]).MulAdd(archsimd.LoadFloat32x8Slice(b[i:]), s0)
	}
	var lanes [8]float32
	s0.Add(s1).Add(s2.Add(s3)).Store(&lanes)
	// Later scalar float code slows down with dirty upper AVX state (SPEC 12).
	archsimd.ClearAVXUpperBits()
	sum := (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + (lanes[4] + lanes[5]) + (lanes[6] + lanes[7])
	for ; i < len(a); i++ {
		sum += a[i] * b[i]
	}
	return sum
}
