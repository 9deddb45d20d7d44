package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/retrieval"
)

// Engine is what the benchmark needs of the relationship engine.
type Engine interface {
	Write(ctx context.Context, writes, deletes []authz.Tuple) error
	Check(ctx context.Context, q authz.Query, c authz.Check) (bool, error)
	BatchCheck(ctx context.Context, q authz.Query, checks []authz.Check) ([]bool, error)
	ListObjects(ctx context.Context, q authz.Query, user, relation, objectType string) iter.Seq2[string, error]
}

// Result is one returned chunk of a strategy.
type Result struct {
	TicketID string
	Ordinal  int
	Score    float32
}

// Outcome is what a strategy answered for one query.
type Outcome struct {
	Results     []Result
	Status      string
	EngineCalls int
	Candidates  int
	// Elapsed, when set, is the time of the measured part alone (floor parts do
	// untimed set-up first); otherwise Run times the whole call.
	Elapsed time.Duration
	// Stages, when set, are the latencies (ms) of the strategy's own stages.
	Stages map[string]float64
}

// Strategy answers a query for a principal.
type Strategy struct {
	Name   string
	Search func(ctx context.Context, p authz.Principal, query string, vec []float32, k int) (Outcome, error)
	// Cheap strategies are timed RunConfig.Samples times per query, so that
	// their p99 rests on enough samples; the others once.
	Cheap bool
}

// Corpus is the loaded org: the store holds it, and the flat copy of its vectors
// here computes the exact visible top-k independently of the store.
type Corpus struct {
	Org     *Org
	Dim     int
	vectors []float32 // chunk-major
	chunks  []chunkRef
	tickets map[string]*retrieval.Ticket
}

type chunkRef struct {
	ticket  *retrieval.Ticket
	ordinal int
}

// LoadStats reports how long loading took.
type LoadStats struct {
	Tuples        int
	Chunks        int
	EngineSeconds float64
	EmbedSeconds  float64
	StoreSeconds  float64
	ChunksPerSec  float64
	// IndexSeconds is the end of a bulk load, building the search indexes
	// deferred to after it (pgvector: its lexical GIN index, and the HNSW graph
	// when a search needs one), not in ChunksPerSec.
	IndexSeconds float64 `json:",omitempty"`
}

// Progress receives load progress (done, total) per phase; nil is fine.
type Progress func(phase string, done, total int)

// Load writes the org's tuples to the engine and its tickets, embedded, to the
// store.
func Load(ctx context.Context, o *Org, eng Engine, store retrieval.Store, emb retrieval.Embedder, tuplesPerWrite int, progress Progress) (*Corpus, LoadStats, error) {
	if progress == nil {
		progress = func(string, int, int) {}
	}
	var st LoadStats
	start := time.Now()
	for i := 0; i < len(o.Tuples); i += tuplesPerWrite {
		end := min(i+tuplesPerWrite, len(o.Tuples))
		if err := eng.Write(ctx, o.Tuples[i:end], nil); err != nil {
			return nil, st, fmt.Errorf("write tuples %d..%d: %w", i, end, err)
		}
		progress("tuples", end, len(o.Tuples))
	}
	st.Tuples = len(o.Tuples)
	st.EngineSeconds = time.Since(start).Seconds()

	c := &Corpus{Org: o, Dim: emb.Dim(), tickets: make(map[string]*retrieval.Ticket, len(o.Tickets))}
	total := 0
	for _, t := range o.Tickets {
		total += len(t.Chunks)
	}
	c.vectors = make([]float32, 0, total*emb.Dim())
	c.chunks = make([]chunkRef, 0, total)

	// Embed on all cores, store in ticket order.
	type embedded struct {
		i    int
		vecs [][]float32
		err  error
	}
	const batch = 64
	workers := runtime.GOMAXPROCS(0)
	jobs := make(chan int)
	results := make(chan embedded, workers*2)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var texts []string
				for _, t := range o.Tickets[i:min(i+batch, len(o.Tickets))] {
					texts = append(texts, t.Chunks...)
				}
				vecs, err := emb.Embed(ctx, texts)
				results <- embedded{i: i, vecs: vecs, err: err}
			}
		}()
	}
	go func() {
		for i := 0; i < len(o.Tickets); i += batch {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		close(results)
	}()
	pending := map[int]embedded{}
	next, done := 0, 0
	var embedTime, storeTime time.Duration
	embedStart := time.Now()
	var firstErr error
	for r := range results {
		if r.err != nil && firstErr == nil {
			firstErr = fmt.Errorf("embed: %w", r.err)
		}
		pending[r.i] = r
		for {
			e, ok := pending[next]
			if !ok || firstErr != nil {
				break
			}
			delete(pending, next)
			s := time.Now()
			v := 0
			hi := min(e.i+batch, len(o.Tickets))
			chunks := make([][]retrieval.Chunk, hi-e.i)
			for ti := e.i; ti < hi; ti++ {
				t := &o.Tickets[ti]
				cs := make([]retrieval.Chunk, len(t.Chunks))
				for j := range t.Chunks {
					cs[j] = retrieval.Chunk{Ordinal: j, Text: t.Chunks[j], Vector: e.vecs[v]}
					c.vectors = append(c.vectors, e.vecs[v]...)
					c.chunks = append(c.chunks, chunkRef{ticket: &t.Ticket, ordinal: j})
					v++
				}
				chunks[ti-e.i] = cs
				c.tickets[t.ID] = &t.Ticket
				done += len(t.Chunks)
			}
			// As many upserts in flight as the batch has tickets, like the
			// indexer: a store with group commit (embedded, pgvector) writes them
			// together; with one per core, pgvector wrote one ticket per
			// transaction.
			if err := upsertAll(ctx, store, o.Tickets[e.i:hi], chunks, batch); err != nil && firstErr == nil {
				firstErr = err
			}
			storeTime += time.Since(s)
			progress("chunks", done, total)
			next += batch
		}
	}
	if firstErr != nil {
		return nil, st, firstErr
	}
	embedTime = time.Since(embedStart) - storeTime
	st.Chunks = total
	st.EmbedSeconds = embedTime.Seconds()
	st.StoreSeconds = storeTime.Seconds()
	st.ChunksPerSec = float64(total) / time.Since(embedStart).Seconds()
	return c, st, nil
}

// upsertAll writes the tickets with up to workers upserts in flight: a database
// store spends most of an upsert waiting on its server, so one at a time leaves
// the cores idle, and concurrent upserts share transactions.
func upsertAll(ctx context.Context, store retrieval.Store, tickets []Ticket, chunks [][]retrieval.Chunk, workers int) error {
	errs := make([]error, len(tickets))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := store.Upsert(ctx, tickets[i].Ticket, chunks[i]); err != nil {
					errs[i] = fmt.Errorf("upsert %s: %w", tickets[i].ID, err)
				}
			}
		}()
	}
	for i := range tickets {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// ExactTopK is the reference: the k best chunks the viewer may see, by brute force
// over every chunk, with the store contract's tie-break.
func (c *Corpus) ExactTopK(v *Viewer, vec []float32, k int) []Result {
	type scored struct {
		Result
		score float64
	}
	var top []scored
	for i, ref := range c.chunks {
		if !v.CanView(ref.ticket) {
			continue
		}
		row := c.vectors[i*c.Dim : (i+1)*c.Dim]
		var s float64
		for j, x := range row {
			s += float64(x) * float64(vec[j])
		}
		top = append(top, scored{Result{ref.ticket.ID, ref.ordinal, float32(s)}, s})
		if len(top) > 4*k {
			sortScored(top, func(a, b scored) int {
				return cmp.Or(cmp.Compare(b.score, a.score), cmp.Compare(a.TicketID, b.TicketID), cmp.Compare(a.Ordinal, b.Ordinal))
			})
			top = top[:k]
		}
	}
	sortScored(top, func(a, b scored) int {
		return cmp.Or(cmp.Compare(b.score, a.score), cmp.Compare(a.TicketID, b.TicketID), cmp.Compare(a.Ordinal, b.Ordinal))
	})
	out := make([]Result, 0, k)
	for _, s := range top[:min(k, len(top))] {
		out = append(out, s.Result)
	}
	return out
}

func sortScored[T any](s []T, f func(a, b T) int) { slices.SortFunc(s, f) }

// Row is one line of the result table: a strategy on one visibility bucket and
// principal kind.
type Row struct {
	Strategy string  `json:"strategy"`
	Bucket   string  `json:"bucket"`
	Kind     string  `json:"kind"`
	Queries  int     `json:"queries"`
	Samples  int     `json:"latency_samples"`
	P50ms    float64 `json:"p50_ms"`
	P95ms    float64 `json:"p95_ms"`
	P99ms    float64 `json:"p99_ms"`
	// P99Rank says which sample p99 is: 1 for the slowest of Samples, 2 for
	// the second slowest, and so on (ceiling rank).
	P99Rank int `json:"p99_rank_from_top"`
	// StageP50ms is the median of each stage the strategy reported (the
	// planner's audit latencies: prefilter, embed, search, check, total).
	StageP50ms map[string]float64 `json:"stage_p50_ms,omitempty"`
	// LatenciesMs are the samples in the order taken (the i-th of two cheap
	// rows of a bucket were taken in the same round, one after the other),
	// kept so that a ratio of two rows' tails can be given with its spread.
	LatenciesMs []float64      `json:"latencies_ms,omitempty"`
	Recall      float64        `json:"recall_at_k"`
	Leaks       int            `json:"leaks"`
	Errors      int            `json:"errors"`
	EngineCalls float64        `json:"engine_calls_per_query"`
	Candidates  float64        `json:"candidates_per_query"`
	Statuses    map[string]int `json:"statuses"`
}

// RunConfig controls a run.
type RunConfig struct {
	K                int
	QueriesPerViewer int
	Seed             uint64
	// Samples is how often each query is timed for Cheap strategies (at least
	// once); recall, leaks and calls come from the first answer.
	Samples  int
	Timeout  time.Duration // per query
	Logger   *slog.Logger
	Progress Progress
}

// Run sends the same queries through every strategy and aggregates per strategy,
// bucket and principal kind. Leaks are checked against the engine with Check
// (HIGHER_CONSISTENCY) and against the generator's ground truth.
func Run(ctx context.Context, c *Corpus, eng Engine, emb retrieval.Embedder, strategies []Strategy, cfg RunConfig) ([]Row, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string, int, int) {}
	}
	queries := c.Org.Queries(cfg.QueriesPerViewer*len(c.Org.Viewers), cfg.Seed)
	vecs, err := emb.Embed(ctx, queries)
	if err != nil {
		return nil, fmt.Errorf("embed queries: %w", err)
	}
	type key struct{ strategy, bucket, kind string }
	type acc struct {
		lat            []float64
		stages         map[string][]float64
		recall         float64
		leaks, errs, n int
		extraErrs      int // of the further samples
		calls, cands   int
		statuses       map[string]int
	}
	accs := map[key]*acc{}
	var order []key
	total := len(queries) * len(strategies)
	done := 0
	qi := 0
	// sample times one call of s, latency (and stages) only.
	sample := func(s Strategy, a *acc, v *Viewer, q string, vec []float32) {
		sctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		start := time.Now()
		o, err := s.Search(sctx, v.Principal, q, vec, cfg.K)
		d := time.Since(start)
		cancel()
		if err != nil {
			a.extraErrs++
			return
		}
		if o.Elapsed > 0 {
			d = o.Elapsed
		}
		a.lat = append(a.lat, float64(d.Microseconds())/1000)
		for st, ms := range o.Stages {
			a.stages[st] = append(a.stages[st], ms)
		}
	}
	for _, v := range c.Org.Viewers {
		for range cfg.QueriesPerViewer {
			q, vec := queries[qi], vecs[qi]
			qi++
			exact := c.ExactTopK(v, vec, cfg.K)
			var cheap []int // strategies whose first answer succeeded and that take more samples
			for si, s := range strategies {
				k := key{s.Name, BucketName(v.Bucket), string(v.Principal.Kind)}
				a := accs[k]
				if a == nil {
					a = &acc{statuses: map[string]int{}, stages: map[string][]float64{}}
					accs[k] = a
					order = append(order, k)
				}
				qctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
				start := time.Now()
				out, err := s.Search(qctx, v.Principal, q, vec, cfg.K)
				elapsed := time.Since(start)
				cancel()
				done++
				cfg.Progress("queries", done, total)
				a.n++
				if err != nil {
					a.errs++
					if qctx.Err() != nil {
						a.statuses["timeout"]++
					} else {
						a.statuses["error"]++
					}
					cfg.Logger.Debug("strategy error", "strategy", s.Name, "err", err)
					continue
				}
				if s.Cheap {
					cheap = append(cheap, si)
				}
				if out.Elapsed > 0 {
					elapsed = out.Elapsed
				}
				a.lat = append(a.lat, float64(elapsed.Microseconds())/1000)
				for st, ms := range out.Stages {
					a.stages[st] = append(a.stages[st], ms)
				}
				a.calls += out.EngineCalls
				a.cands += out.Candidates
				a.statuses[out.Status]++
				a.recall += recall(out.Results, exact)
				leaks, err := countLeaks(ctx, c, eng, v, out.Results)
				if err != nil {
					return nil, fmt.Errorf("leak check: %w", err)
				}
				a.leaks += leaks
			}
			// Further samples of the same query, interleaved: one of each cheap
			// strategy per round, starting one strategy later every round, so
			// that a burst of load on the shared machine lands on the floor and
			// the planner rows alike instead of on whichever was being sampled.
			for round := 1; round < cfg.Samples; round++ {
				for j := range cheap {
					s := strategies[cheap[(j+round)%len(cheap)]]
					sample(s, accs[key{s.Name, BucketName(v.Bucket), string(v.Principal.Kind)}], v, q, vec)
				}
			}
		}
	}
	rows := make([]Row, 0, len(order))
	for _, k := range order {
		a := accs[k]
		ok := a.n - a.errs
		r := Row{Strategy: k.strategy, Bucket: k.bucket, Kind: k.kind, Queries: a.n, Samples: len(a.lat), Leaks: a.leaks, Errors: a.errs + a.extraErrs, Statuses: a.statuses}
		if ok > 0 {
			r.P50ms, r.P95ms, r.P99ms = percentile(a.lat, 50), percentile(a.lat, 95), percentile(a.lat, 99)
			r.P99Rank = rankFromTop(len(a.lat), 99)
			r.LatenciesMs = a.lat
			for stage, xs := range a.stages {
				if r.StageP50ms == nil {
					r.StageP50ms = map[string]float64{}
				}
				r.StageP50ms[stage] = percentile(xs, 50)
			}
			r.Recall = a.recall / float64(ok)
			r.EngineCalls = float64(a.calls) / float64(ok)
			r.Candidates = float64(a.cands) / float64(ok)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// recall@k: the share of the exact visible top-k found (1 when nothing is visible
// and nothing was returned).
func recall(got, exact []Result) float64 {
	if len(exact) == 0 {
		return 1
	}
	want := map[[2]any]bool{}
	for _, r := range exact {
		want[[2]any{r.TicketID, r.Ordinal}] = true
	}
	hit := 0
	for _, r := range got {
		if want[[2]any{r.TicketID, r.Ordinal}] {
			hit++
		}
	}
	return float64(hit) / float64(len(exact))
}

func countLeaks(ctx context.Context, c *Corpus, eng Engine, v *Viewer, results []Result) (int, error) {
	leaks := 0
	seen := map[string]bool{}
	q := authz.Query{ContextualTuples: v.Principal.ContextualTuples(), Consistency: authz.HigherConsistency}
	for _, r := range results {
		if seen[r.TicketID] {
			continue
		}
		seen[r.TicketID] = true
		t := c.tickets[r.TicketID]
		if t == nil || !v.CanView(t) {
			leaks++
			continue
		}
		ok, err := eng.Check(ctx, q, authz.Check{User: v.Principal.Subject(), Relation: v.Principal.ViewRelation(), Object: "ticket:" + r.TicketID})
		if err != nil {
			return 0, err
		}
		if !ok {
			leaks++
		}
	}
	return leaks, nil
}

// rankFromTop is which sample, counted from the slowest, percentile p of n
// samples is.
func rankFromTop(n int, p float64) int {
	i := int(math.Ceil(p/100*float64(n))) - 1
	return n - max(0, min(i, n-1))
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// ratioCI is a paired bootstrap interval (confidence conf, e.g. 0.9) of
// percentile p of num over percentile p of den. The i-th samples of the two
// rows were taken in the same round, so rounds are resampled whole: a burst
// of load that slowed both stays in both. Rows with different sample counts
// (a sample failed) are resampled independently. Deterministic (fixed seed),
// so a report is reproducible from its samples.
func ratioCI(num, den []float64, p, conf float64) (lo, hi float64) {
	if len(num) == 0 || len(den) == 0 {
		return math.NaN(), math.NaN()
	}
	const iters = 2000
	rng := rand.New(rand.NewPCG(1, 2))
	ratios := make([]float64, iters)
	a, b := make([]float64, len(num)), make([]float64, len(den))
	paired := len(num) == len(den)
	for it := range ratios {
		for i := range a {
			j := rng.IntN(len(num))
			a[i] = num[j]
			if paired {
				b[i] = den[j] // the same round for both rows
			}
		}
		if !paired {
			for i := range b {
				b[i] = den[rng.IntN(len(den))]
			}
		}
		ratios[it] = percentile(a, p) / percentile(b, p)
	}
	return percentile(ratios, 100*(1-conf)/2), percentile(ratios, 100*(1+conf)/2)
}
