//go:build !amd64

package embedded

func dotInt8(a []int8, b []int16) int32 { return dotInt8Go(a, b) }
