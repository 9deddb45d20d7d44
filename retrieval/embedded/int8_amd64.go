package embedded

import "golang.org/x/sys/cpu"

//go:noescape
func dotInt8AVX2(a *int8, b *int16, n int) int32

// dotInt8 is the int8×int16 dot product: AVX2 for the multiple-of-16 prefix,
// Go for the rest.
func dotInt8(a []int8, b []int16) int32 {
	n := len(a) &^ 15
	if n == 0 || !cpu.X86.HasAVX2 {
		return dotInt8Go(a, b)
	}
	b = b[:len(a)]
	s := dotInt8AVX2(&a[0], &b[0], n)
	if n < len(a) {
		s += dotInt8Go(a[n:], b[n:])
	}
	return s
}
