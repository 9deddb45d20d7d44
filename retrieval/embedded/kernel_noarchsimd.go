//go:build !(goexperiment.simd && amd64)

package embedded

// haveArchSIMD is false: simd/archsimd exists only with GOEXPERIMENT=simd.
const haveArchSIMD = false

func dotArchSIMD(a, b []float32) float32 { return dotGo(a, b) }
