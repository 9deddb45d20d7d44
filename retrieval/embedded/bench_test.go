package embedded

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/viterin/vek/vek32"

	"github.com/clearance-dev/clearance/retrieval"
)

// The 1M-row benchmarks need about 2.5 GB of memory and a minute to build:
//
//	go test ./retrieval/embedded -run '^$' -bench . -large
var (
	large     = flag.Bool("large", false, "also run the 1M-row benchmarks")
	benchRows = flag.Int("rows", 0, "run the search benchmarks at this many rows only")
)

const (
	benchDim      = 384
	benchProjects = 1000 // one project is 0.1% of the rows
	benchChunks   = 4    // chunks per ticket
)

var benchModel = retrieval.IndexMeta{Model: "bench", Dim: benchDim}

// fillBench upserts rows random unit vectors: rows/4 tickets spread evenly over
// benchProjects projects of one tenant.
func fillBench(tb testing.TB, s *Store, rows int) {
	rng := rand.New(rand.NewPCG(11, uint64(rows)))
	cs := make([]retrieval.Chunk, benchChunks)
	for i := range cs {
		cs[i] = retrieval.Chunk{Ordinal: i, Text: "chunk text", Vector: make([]float32, benchDim)}
	}
	ctx := context.Background()
	for i := range rows / benchChunks {
		for _, c := range cs {
			fillUnit(rng, c.Vector)
		}
		tk := retrieval.Ticket{ID: fmt.Sprintf("T%07d", i), Tenant: "acme", Project: fmt.Sprintf("p%04d", i%benchProjects), Title: "title"}
		if err := s.Upsert(ctx, tk, cs); err != nil {
			tb.Fatal(err)
		}
	}
}

func fillUnit(rng *rand.Rand, v []float32) {
	var n float32
	for i := range v {
		x := rng.Float32()*2 - 1
		v[i] = x
		n += x * x
	}
	n = float32(1 / math.Sqrt(float64(n)))
	for i := range v {
		v[i] *= n
	}
}

// benchFilter selects pct percent of the rows (0.1 is one project).
func benchFilter(pct float64) retrieval.Filter {
	if pct >= 100 {
		return retrieval.Filter{Tenant: "acme", AllProjects: true}
	}
	n := int(pct / 100 * benchProjects)
	f := retrieval.Filter{Tenant: "acme"}
	for i := range n {
		f.Projects = append(f.Projects, fmt.Sprintf("p%04d", i*(benchProjects/n)))
	}
	return f
}

// benchStores caches the filled stores across benchmark invocations (the
// testing package calls each benchmark function several times).
var benchStores sync.Map

func benchStore(b *testing.B, rows int) *Store {
	if s, ok := benchStores.Load(rows); ok {
		return s.(*Store)
	}
	s, err := Open(context.Background(), Config{Meta: benchModel, Quantize: true})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	fillBench(b, s, rows)
	b.Logf("built %d rows in %v (kernel %s)", rows, time.Since(start), s.Kernel())
	benchStores.Store(rows, s)
	return s
}

func BenchmarkSearch(b *testing.B) {
	sizes := []int{100_000}
	if *large {
		sizes = append(sizes, 1_000_000)
	}
	if *benchRows > 0 {
		sizes = []int{*benchRows}
	}
	for _, rows := range sizes {
		for _, pct := range []float64{0.1, 1, 10, 100} {
			name := fmt.Sprintf("rows=%s/filter=%g%%", short(rows), pct)
			b.Run(name, func(b *testing.B) { benchSearchAt(b, rows, pct) })
		}
	}
}

func short(n int) string {
	if n >= 1_000_000 {
		return fmt.Sprintf("%dM", n/1_000_000)
	}
	return fmt.Sprintf("%dk", n/1000)
}

func benchSearchAt(b *testing.B, rows int, pct float64) {
	s := benchStore(b, rows)
	flt := benchFilter(pct)
	segs, n := s.ix.resolve(flt)
	rng := rand.New(rand.NewPCG(3, 4))
	queries := make([][]float32, 64)
	for i := range queries {
		queries[i] = make([]float32, benchDim)
		fillUnit(rng, queries[i])
	}
	bytes := int64(n) * benchDim * 4
	search := func(quantize bool, workers int) func(b *testing.B) {
		return func(b *testing.B) {
			s.cfg.Quantize, s.scan.workers, s.scan.minQuant = quantize, workers, 1
			defer func() { s.cfg.Quantize, s.scan.workers = true, s.cfg.Workers }()
			b.SetBytes(bytes)
			lat := make([]time.Duration, 0, 1024)
			i := 0
			for b.Loop() {
				t0 := time.Now()
				res, err := s.Search(context.Background(), retrieval.SearchRequest{Vector: queries[i%len(queries)], Filter: flt, K: 10})
				lat = append(lat, time.Since(t0))
				if err != nil || len(res.Hits) != 10 {
					b.Fatalf("search: %d hits, %v", len(res.Hits), err)
				}
				i++
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		}
	}
	b.Run("store-f32", search(false, s.cfg.Workers))
	b.Run("store-f32-1core", search(false, 1))
	b.Run("store-int8", search(true, s.cfg.Workers))
	// The raw scans read the same slabs with no filter logic and no heap: the
	// memory-bandwidth reference for the rows the filter allows.
	raw := func(dot func(a, b []float32) float32, workers int) func(b *testing.B) {
		return func(b *testing.B) {
			b.SetBytes(bytes)
			sc := scanner{workers: workers, minSplit: 1}
			parts := sc.split(segs, n)
			i := 0
			for b.Loop() {
				q := queries[i%len(queries)]
				var wg sync.WaitGroup
				best := make([]float32, len(parts))
				for w, part := range parts {
					wg.Go(func() {
						m := float32(-2)
						for _, sg := range part {
							v := sg.p.vecs[sg.lo*benchDim : sg.hi*benchDim]
							for r := 0; r+benchDim <= len(v); r += benchDim {
								if d := dot(q, v[r:r+benchDim]); d > m {
									m = d
								}
							}
						}
						best[w] = m
					})
				}
				wg.Wait()
				i++
			}
		}
	}
	b.Run("raw-go-loop", raw(plainDot, 1))
	b.Run("raw-go-unrolled", raw(dotGo, 1))
	b.Run("raw-vek", raw(vek32.Dot, 1))
	b.Run("raw-vek-2cores", raw(vek32.Dot, 2))
	if haveArchSIMD { // GOEXPERIMENT=simd builds only
		b.Run("raw-archsimd", raw(dotArchSIMD, 1))
	}
}

// plainDot is the naive loop, for reference.
func plainDot(a, b []float32) float32 {
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// BenchmarkReopen builds 1M×384 (100k without -large) in a data dir, compacts
// it into a snapshot, and measures in a fresh child process how long Open
// takes and the resident memory afterwards, against the raw float32 bytes.
func BenchmarkReopen(b *testing.B) {
	rows := 100_000
	if *large {
		rows = 1_000_000
	}
	dir := b.TempDir()
	s, err := Open(context.Background(), Config{DataDir: dir, Meta: benchModel, NoSync: true, CompactBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	fillBench(b, s, rows)
	b.Logf("wrote %d rows to the log in %v", rows, time.Since(start))
	start = time.Now()
	if err := s.Compact(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Logf("snapshot in %v", time.Since(start))
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	s = nil
	raw := float64(rows) * benchDim * 4
	for b.Loop() {
		for _, quantize := range []bool{false, true} {
			cmd := exec.Command(os.Args[0], "-test.run=^TestReopenChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "EMBEDDED_REOPEN_DIR="+dir, fmt.Sprintf("EMBEDDED_REOPEN_QUANTIZE=%t", quantize))
			out, err := cmd.CombinedOutput()
			if err != nil {
				b.Fatalf("child: %v\n%s", err, out)
			}
			var ns, rss, hwm int64
			for _, l := range strings.Split(string(out), "\n") {
				if _, err := fmt.Sscanf(strings.TrimSpace(l), "reopen ns=%d rss=%d hwm=%d", &ns, &rss, &hwm); err == nil {
					break
				}
			}
			if ns == 0 {
				b.Fatalf("child printed no result:\n%s", out)
			}
			suffix := ""
			if quantize {
				suffix = "-int8"
			}
			b.ReportMetric(time.Duration(ns).Seconds(), "open-s"+suffix)
			b.ReportMetric(float64(rss)/raw, "rss/raw"+suffix)
			b.ReportMetric(float64(hwm)/raw, "peak-rss/raw"+suffix)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			b.Logf("%s: %d MiB", filepath.Base(f), st.Size()>>20)
		}
	}
}

// TestReopenChild is BenchmarkReopen's child process.
func TestReopenChild(t *testing.T) {
	dir := os.Getenv("EMBEDDED_REOPEN_DIR")
	if dir == "" {
		t.Skip("run by BenchmarkReopen")
	}
	start := time.Now()
	s, err := Open(context.Background(), Config{DataDir: dir, Meta: benchModel, Quantize: os.Getenv("EMBEDDED_REOPEN_QUANTIZE") == "true"})
	if err != nil {
		t.Fatal(err)
	}
	open := time.Since(start)
	st, _ := s.Stats(context.Background())
	rss, hwm := procStatus("VmRSS:"), procStatus("VmHWM:")
	fmt.Printf("reopen ns=%d rss=%d hwm=%d\n", open.Nanoseconds(), rss, hwm)
	fmt.Printf("chunks %d\n", st.Chunks)
	s.Close()
}

// procStatus reads a memory line of /proc/self/status, in bytes.
func procStatus(key string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key) {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkUpsert measures ticket writes (4 chunks × 384) with fsync per group
// commit, without fsync, and in memory, from 1 and 4 concurrent writers.
func BenchmarkUpsert(b *testing.B) {
	for _, mode := range []string{"synced", "nosync", "memory"} {
		for _, writers := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/writers=%d", mode, writers), func(b *testing.B) {
				cfg := Config{Meta: benchModel, NoSync: mode == "nosync"}
				if mode != "memory" {
					cfg.DataDir = b.TempDir()
				}
				s, err := Open(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				rng := rand.New(rand.NewPCG(1, 1))
				cs := make([]retrieval.Chunk, benchChunks)
				for i := range cs {
					cs[i] = retrieval.Chunk{Ordinal: i, Text: "chunk text", Vector: make([]float32, benchDim)}
					fillUnit(rng, cs[i].Vector)
				}
				var next atomic.Int64
				b.SetBytes(benchChunks * benchDim * 4)
				b.ResetTimer()
				var wg sync.WaitGroup
				for range writers {
					wg.Go(func() {
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							tk := retrieval.Ticket{ID: fmt.Sprintf("T%d", i%5000), Tenant: "acme", Project: fmt.Sprintf("p%d", i%50)}
							if err := s.Upsert(context.Background(), tk, cs); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			})
		}
	}
}
