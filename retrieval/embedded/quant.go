package embedded

import (
	"math"
	"slices"
	"sync"
)

// quantized holds int8 codes of a partition's rows, x ≈ code·scale/127, in the
// same row order as the float slab. All methods accept a nil receiver (an index
// that does not quantize) and then do nothing.
//
// Error bound. With s = max|x_j| and c_j = round(127·x_j/s), each component is
// off by at most s/254; likewise the query (scale t, codes e_j). For
// approx = (s·t/127²)·Σ c_j·e_j:
//
//	|q·x − approx| ≤ ‖q‖₁·s/254 + (t/254)·‖x̂‖₁,   ‖x̂‖₁ = (s/127)·Σ|c_j|
//
// plus the float32 rounding of the exact kernel. A row whose upper bound is
// below the m-th best lower bound cannot be in the top m, so rescoring the rest
// with float32 gives exactly the float scan's ranking.
type quantized struct {
	codes []int8
	scale []float32 // per row: max |x_j|
	l1    []float32 // per row: Σ|c_j|
}

func (z *quantized) grow(rows, dim int) {
	if z == nil {
		return
	}
	z.codes = slices.Grow(z.codes, rows*dim)
	z.scale = slices.Grow(z.scale, rows)
	z.l1 = slices.Grow(z.l1, rows)
}

func (z *quantized) append(vecs []float32, dim int) {
	if z == nil || dim == 0 {
		return
	}
	rows := len(vecs) / dim
	n := len(z.scale)
	z.codes = slices.Grow(z.codes, rows*dim)[:(n+rows)*dim]
	z.scale = slices.Grow(z.scale, rows)[:n+rows]
	z.l1 = slices.Grow(z.l1, rows)[:n+rows]
	z.encode(vecs, n, dim)
}

// encode writes the codes of vecs (whole rows) at row offset at; the slices
// must already be long enough. Disjoint ranges may be encoded concurrently.
func (z *quantized) encode(vecs []float32, at, dim int) {
	for r := 0; r+dim <= len(vecs); r += dim {
		x := vecs[r : r+dim]
		row := at + r/dim
		// max |x_j| on the bit patterns: for non-negative floats (no NaN; the
		// store rejects those) integer order is float order, and integer max
		// needs no unpredictable branch.
		var bits uint32
		for _, v := range x {
			bits = max(bits, math.Float32bits(v)&^(1<<31))
		}
		s := math.Float32frombits(bits)
		var inv float32
		if s > 0 {
			inv = 127 / s
		}
		dst := z.codes[row*dim : (row+1)*dim]
		var l1 int32
		for j, v := range x {
			// Adding and subtracting 1.5·2²³ rounds to the nearest integer
			// without a branch. |v·inv| ≤ 127 (up to float32 rounding, which
			// moves a code far less than the absolute slack in bounds), so
			// the code needs no clamp.
			q := int32((v*inv + roundMagic) - roundMagic)
			dst[j] = int8(q)
			l1 += (q ^ (q >> 31)) - (q >> 31)
		}
		z.scale[row] = s
		z.l1[row] = float32(l1)
	}
}

// quantizeAll builds the int8 codes of every partition on workers goroutines
// (used after loading, where it would otherwise dominate reopen time).
func (ix *index) quantizeAll(workers int) {
	type job struct {
		p      *partition
		lo, hi int
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for j := range jobs {
				j.p.q.encode(j.p.vecs[j.lo*ix.dim:j.hi*ix.dim], j.lo, ix.dim)
			}
		})
	}
	const step = 4096
	for _, ps := range ix.tenants {
		for _, p := range ps {
			n := len(p.rows)
			p.q = &quantized{codes: make([]int8, n*ix.dim), scale: make([]float32, n), l1: make([]float32, n)}
			for lo := 0; lo < n; lo += step {
				jobs <- job{p: p, lo: lo, hi: min(n, lo+step)}
			}
		}
	}
	close(jobs)
	wg.Wait()
	ix.quantize = true
}

// roundMagic is 1.5·2²³: float32 addition of it rounds to an integer.
const roundMagic float32 = 12582912

// move copies row from into row to.
func (z *quantized) move(to, from, dim int) {
	if z == nil {
		return
	}
	copy(z.codes[to*dim:(to+1)*dim], z.codes[from*dim:(from+1)*dim])
	z.scale[to], z.l1[to] = z.scale[from], z.l1[from]
}

func (z *quantized) truncate(rows, dim int) {
	if z == nil {
		return
	}
	z.codes, z.scale, z.l1 = z.codes[:rows*dim], z.scale[:rows], z.l1[:rows]
}

func (z *quantized) clip() {
	if z == nil {
		return
	}
	z.codes, z.scale, z.l1 = slices.Clone(z.codes), slices.Clone(z.scale), slices.Clone(z.l1)
}

// queryCodes is a query quantized like a row, widened to int16 for the kernel.
type queryCodes struct {
	codes []int16
	scale float32 // t = max|q_j|
	l1    float32 // ‖q‖₁
	dim   float32
}

func encodeQuery(q []float32) *queryCodes {
	qq := &queryCodes{codes: make([]int16, len(q)), dim: float32(len(q))}
	for _, v := range q {
		qq.scale = max(qq.scale, float32(math.Abs(float64(v))))
		qq.l1 += float32(math.Abs(float64(v)))
	}
	if qq.scale > 0 {
		for i, v := range q {
			qq.codes[i] = int16(max(-127, min(127, math.Round(float64(v)*127/float64(qq.scale)))))
		}
	}
	return qq
}

// bounds returns a lower and an upper bound of the float32 score of row i.
func (z *quantized) bounds(qq *queryCodes, i, dim int) (lo, hi float32) {
	s := z.scale[i]
	approx := float32(dotInt8(z.codes[i*dim:(i+1)*dim], qq.codes)) * (s * qq.scale / (127 * 127))
	err := s/254*(qq.l1+qq.scale*z.l1[i]/127) +
		// float32 rounding of the exact kernel, generously: d·2⁻²² relative to
		// Σ|q_j·x_j| ≤ ‖q‖₁·s, plus an absolute floor.
		qq.l1*s*qq.dim*2.5e-7 + 1e-6
	return approx - err, approx + err
}

// dotInt8Go is the portable int8 kernel.
func dotInt8Go(a []int8, b []int16) int32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 int32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += int32(a[i]) * int32(b[i])
		s1 += int32(a[i+1]) * int32(b[i+1])
		s2 += int32(a[i+2]) * int32(b[i+2])
		s3 += int32(a[i+3]) * int32(b[i+3])
	}
	for ; i < len(a); i++ {
		s0 += int32(a[i]) * int32(b[i])
	}
	return s0 + s1 + s2 + s3
}
