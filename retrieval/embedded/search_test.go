package embedded

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/viterin/vek/vek32"

	"github.com/clearance-dev/clearance/retrieval"
)

func TestKernelsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 140 {
		a, b := make([]float32, n), make([]float32, n)
		ai, bi := make([]int8, n), make([]int16, n)
		var want float64
		var wantI int32
		for i := range n {
			a[i], b[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
			want += float64(a[i]) * float64(b[i])
			ai[i], bi[i] = int8(rng.IntN(255)-127), int16(rng.IntN(255)-127)
			wantI += int32(ai[i]) * int32(bi[i])
		}
		if got := dotGo(a, b); math.Abs(float64(got)-want) > 1e-4*math.Max(1, math.Abs(want)) {
			t.Fatalf("n=%d: dotGo = %v, want %v", n, got, want)
		}
		if n > 0 {
			if got := vek32.Dot(a, b); math.Abs(float64(got)-want) > 1e-4*math.Max(1, math.Abs(want)) {
				t.Fatalf("n=%d: vek32.Dot = %v, want %v", n, got, want)
			}
		}
		if got := dotArchSIMD(a, b); math.Abs(float64(got)-want) > 1e-4*math.Max(1, math.Abs(want)) {
			t.Fatalf("n=%d: dotArchSIMD = %v, want %v", n, got, want)
		}
		if got := dotInt8(ai, bi); got != wantI {
			t.Fatalf("n=%d: dotInt8 = %d, want %d", n, got, wantI)
		}
		if got := dotInt8Go(ai, bi); got != wantI {
			t.Fatalf("n=%d: dotInt8Go = %d, want %d", n, got, wantI)
		}
	}
}

// randomRows fills a store with clustered vectors, exact duplicates and
// near-duplicates, the cases where int8 bounds and tie-breaks matter.
func randomRows(t *testing.T, stores []*Store, dim, tickets int) {
	rng := rand.New(rand.NewPCG(7, 8))
	centers := make([][]float32, 5)
	for i := range centers {
		centers[i] = randUnit(rng, dim)
	}
	var prev []float32
	for i := range tickets {
		tk := retrieval.Ticket{ID: fmt.Sprintf("T%05d", i), Tenant: "acme", Project: fmt.Sprintf("p%d", rng.IntN(7))}
		var cs []retrieval.Chunk
		for k := range 1 + rng.IntN(4) {
			var v []float32
			switch r := rng.IntN(10); {
			case r == 0 && prev != nil:
				v = slices.Clone(prev) // exact duplicate
			case r == 1 && prev != nil:
				v = slices.Clone(prev)
				v[rng.IntN(dim)] += 1e-4
				normalize(v)
			default:
				c := centers[rng.IntN(len(centers))]
				v = make([]float32, dim)
				for j := range v {
					v[j] = c[j] + 0.3*float32(rng.NormFloat64())/float32(math.Sqrt(float64(dim)))
				}
				normalize(v)
			}
			prev = v
			cs = append(cs, retrieval.Chunk{Ordinal: k, Text: "x", Vector: v})
		}
		for _, s := range stores {
			if err := s.Upsert(t.Context(), tk, cs); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func randUnit(rng *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	normalize(v)
	return v
}

func normalize(v []float32) {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	n = math.Sqrt(n)
	for i := range v {
		v[i] = float32(float64(v[i]) / n)
	}
}

// TestParallelAndQuantizedEqualSerialExact: splitting a scan across goroutines
// and the int8 first pass must return exactly (bit for bit) what one goroutine
// scanning float32 returns.
func TestParallelAndQuantizedEqualSerialExact(t *testing.T) {
	const dim = 96
	open := func(cfg Config) *Store {
		cfg.Meta = retrieval.IndexMeta{Model: "m", Dim: dim}
		s, err := Open(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	serial := open(Config{Workers: 1})
	parallel := open(Config{Workers: 3})
	parallel.scan.minSplit = 1
	quant := open(Config{Workers: 2, Quantize: true})
	quant.scan.minSplit = 1
	quant.scan.minQuant = 1
	randomRows(t, []*Store{serial, parallel, quant}, dim, 3000)
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range 60 {
		q := randUnit(rng, dim)
		if i%3 == 0 { // a stored vector: exact ties with its duplicates
			res, _ := serial.Search(t.Context(), retrieval.SearchRequest{Vector: q, Filter: retrieval.Filter{Tenant: "acme", AllProjects: true}, K: 1})
			tk, _ := serial.Get(t.Context(), res.Hits[0].TicketID)
			st := serial.ix.tickets[tk.ID]
			q = slices.Clone(st.part.vecs[int(st.rows[0])*dim : int(st.rows[0]+1)*dim])
		}
		flt := retrieval.Filter{Tenant: "acme", Projects: []string{"p1", "p4"}, Tickets: []string{"T00010", "T00500"}}
		if i%2 == 0 {
			flt = retrieval.Filter{Tenant: "acme", AllProjects: true}
		}
		r := retrieval.SearchRequest{Vector: q, Filter: flt, K: 1 + rng.IntN(40), Offset: rng.IntN(20)}
		want, err := serial.Search(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		for name, s := range map[string]*Store{"parallel": parallel, "quantized": quant} {
			got, err := s.Search(t.Context(), r)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Hits, want.Hits) || !got.Exact {
				t.Fatalf("%s search %d differs from the serial float scan:\n got %v\nwant %v", name, i, got, want)
			}
		}
	}
}

func TestSplitCoversEveryRowOnce(t *testing.T) {
	p1 := &partition{rows: make([]rowRef, 10)}
	p2 := &partition{rows: make([]rowRef, 3)}
	segs := []segment{{p: p1, lo: 0, hi: 10}, {p: p2, rows: []int32{2, 0}}, {p: p2, lo: 0, hi: 3}}
	for w := 1; w <= 6; w++ {
		sc := scanner{workers: w, minSplit: 1}
		parts := sc.split(segs, 15)
		if len(parts) > w {
			t.Fatalf("workers=%d: %d parts", w, len(parts))
		}
		seen := map[string]int{}
		for _, part := range parts {
			for _, s := range part {
				if s.rows != nil {
					for _, r := range s.rows {
						seen[fmt.Sprintf("%p/%d/direct", s.p, r)]++
					}
					continue
				}
				for r := s.lo; r < s.hi; r++ {
					seen[fmt.Sprintf("%p/%d", s.p, r)]++
				}
			}
		}
		if len(seen) != 15 {
			t.Fatalf("workers=%d: %d distinct rows scanned, want 15", w, len(seen))
		}
		for k, n := range seen {
			if n != 1 {
				t.Fatalf("workers=%d: row %s scanned %d times", w, k, n)
			}
		}
	}
}

// TestInt8BoundsHold checks the int8 error bound directly: for random rows and
// queries of different scales and shapes, the float32 kernel's score always
// lies within [lo, hi].
func TestInt8BoundsHold(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	_, dot := pickKernel(false)
	for _, dim := range []int{3, 16, 37, 384} {
		z := &quantized{}
		rows := make([][]float32, 300)
		for i := range rows {
			v := make([]float32, dim)
			scale := float32(math.Pow(10, float64(rng.IntN(5)-2)))
			for j := range v {
				switch rng.IntN(4) {
				case 0: // sparse
				case 1:
					v[j] = scale * float32(rng.NormFloat64()) * 10
				default:
					v[j] = scale * float32(rng.NormFloat64())
				}
			}
			rows[i] = v
			z.append(v, dim)
		}
		for range 50 {
			q := randUnit(rng, dim)
			if rng.IntN(3) == 0 {
				q[rng.IntN(dim)] = 5 // one dominant component
			}
			qq := encodeQuery(q)
			for i, v := range rows {
				exact := dot(q, v)
				lo, hi := z.bounds(qq, i, dim)
				if exact < lo || exact > hi {
					t.Fatalf("dim %d row %d: exact %v outside [%v, %v]", dim, i, exact, lo, hi)
				}
			}
		}
	}
}
