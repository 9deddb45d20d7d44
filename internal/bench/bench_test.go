package bench

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/authz"
	authzembedded "github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/retrieval"
	storeembedded "github.com/clearance-dev/clearance/retrieval/embedded"
)

// TestReferenceMatchesEngine proves the generator's ground truth is the model's:
// for a sample of principals and tickets, Viewer.CanView equals the engine's Check.
// Without this, recall and leak numbers would measure the generator, not clearance.
func TestReferenceMatchesEngine(t *testing.T) {
	ctx := context.Background()
	org := GenerateOrg(OrgConfig{Chunks: 2000, ChunksPerTicket: 2, Tenants: 2, ChunksPerProject: 50, UsersPerBucket: 1, Seed: 7})
	// sqlite as the engine ships it (pinned statistics, reused prepared statements,
	// OpenFGA's partial indexes dropped) must answer exactly like memory.
	for _, cfg := range []authzembedded.Config{
		{Datastore: authzembedded.Memory},
		{Datastore: authzembedded.SQLite, DataDir: t.TempDir()},
	} {
		t.Run(cfg.Datastore, func(t *testing.T) {
			eng, err := authzembedded.New(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { eng.Close() })
			if err := eng.Write(ctx, org.Tuples, nil); err != nil {
				t.Fatal(err)
			}
			// Twice: the second pass runs on statements the first one prepared.
			for range 2 {
				checkReference(t, eng, org)
			}
		})
	}
}

// checkReference compares the engine with the generator's ground truth: a
// HIGHER_CONSISTENCY BatchCheck of every seventh ticket and the full listing of
// visible tickets, for every principal.
func checkReference(t *testing.T, eng *authzembedded.Engine, org *Org) {
	t.Helper()
	ctx := context.Background()
	checked, visible := 0, 0
	for _, v := range org.Viewers {
		q := authz.Query{ContextualTuples: v.Principal.ContextualTuples(), Consistency: authz.HigherConsistency}
		var checks []authz.Check
		for i := 0; i < len(org.Tickets); i += 7 {
			checks = append(checks, authz.Check{User: v.Principal.Subject(), Relation: v.Principal.ViewRelation(), Object: "ticket:" + org.Tickets[i].ID})
		}
		got, err := eng.BatchCheck(ctx, q, checks)
		if err != nil {
			t.Fatal(err)
		}
		for j, i := 0, 0; i < len(org.Tickets); i, j = i+7, j+1 {
			want := v.CanView(&org.Tickets[i].Ticket)
			if got[j] != want {
				t.Fatalf("%s on %s: engine %v, reference %v", v.Principal, org.Tickets[i].ID, got[j], want)
			}
			checked++
			if want {
				visible++
			}
		}
		listed := map[string]bool{}
		for id, err := range eng.ListObjects(ctx, q, v.Principal.Subject(), v.Principal.ViewRelation(), "ticket") {
			if err != nil {
				t.Fatal(err)
			}
			listed[id] = true
		}
		for i := range org.Tickets {
			tk := &org.Tickets[i].Ticket
			if listed[tk.ID] != v.CanView(tk) {
				t.Fatalf("%s lists %s: %v, reference %v", v.Principal, tk.ID, listed[tk.ID], v.CanView(tk))
			}
		}
	}
	if visible == 0 || visible == checked {
		t.Fatalf("degenerate org: %d of %d checks visible", visible, checked)
	}
	t.Logf("%d checks and %d listings agree (%d checks visible)", checked, len(org.Viewers), visible)
}

// TestSmallestScaleCorrectness runs every strategy at a small scale and asserts
// correctness only: no leaks anywhere, and recall 1.0 for the exact strategies.
func TestSmallestScaleCorrectness(t *testing.T) {
	ctx := context.Background()
	org := GenerateOrg(OrgConfig{Chunks: 4000, ChunksPerTicket: 2, Tenants: 2, ChunksPerProject: 100, UsersPerBucket: 1, Seed: 3})
	eng, emb, store, corpus := loadOrg(t, org, 64)
	coldLog, warmLog := &filter.MemoryLog{}, &filter.MemoryLog{}
	strategies := []Strategy{
		NaivePostFilter(store, eng, 100),
		ListObjectsOverTickets(store, eng),
		Planner("clearance", filter.New(filter.Config{CacheSize: -1}, eng, store, emb, coldLog), coldLog, false),
		Planner("clearance warm", filter.New(filter.Config{}, eng, store, emb, warmLog), warmLog, true),
	}
	rows, err := Run(ctx, corpus, eng, emb, strategies, RunConfig{K: 10, QueriesPerViewer: 1, Seed: 1, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Leaks != 0 || r.Errors != 0 {
			t.Errorf("%s %s %s: %d leaks, %d errors", r.Strategy, r.Bucket, r.Kind, r.Leaks, r.Errors)
		}
		if r.Strategy != "naive post-filter (top-100)" && r.Recall != 1 {
			t.Errorf("%s %s %s: recall %.3f, want 1", r.Strategy, r.Bucket, r.Kind, r.Recall)
		}
	}
}

func newEngine(t *testing.T) *authzembedded.Engine {
	t.Helper()
	eng, err := authzembedded.New(context.Background(), authzembedded.Config{Datastore: authzembedded.Memory})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return eng
}

// TestRunFlow runs the flow benchmark on a small org: a row per destination
// floor and per (listings kept, kept across ticket writes or afresh,
// destination, sources), every
// decision a resolved one, the company-wide audience every user and its
// service account, and kept listings saving listings.
func TestRunFlow(t *testing.T) {
	ctx := context.Background()
	eng, err := authzembedded.New(ctx, authzembedded.Config{Datastore: authzembedded.Memory})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	o := GenerateFlowOrg(2000, 1)
	rows, _, err := RunFlow(ctx, o, eng, eng.Model(), 1000, FlowConfig{Runs: 3, Timeout: time.Minute, Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2+18 {
		t.Fatalf("%d rows, want 20", len(rows))
	}
	calls := map[string]float64{}
	for _, r := range rows[2:] {
		if r.Case == "" || r.Runs != 3 || r.P99ms <= 0 || r.Ratio <= 0 {
			t.Errorf("row %+v", r)
		}
		if r.Sources > 1 && strings.Contains(r.Case, o.Wide) && r.Audience != o.Users+1 {
			t.Errorf("%s: audience %d, want %d users and one service account", r.Case, r.Audience, o.Users)
		}
		mode := "afresh"
		switch {
		case r.Kept && r.TicketWrites:
			mode = "kept across ticket writes"
		case r.Kept:
			mode = "kept"
		}
		calls[mode] += r.ListUsers
	}
	if calls["kept"] >= calls["afresh"] || calls["kept across ticket writes"] >= calls["afresh"] {
		t.Errorf("listings per decision: %v; want fewer kept, also across ticket writes", calls)
	}
	var md strings.Builder
	WriteFlowMarkdown(&md, rows)
	if !strings.Contains(md.String(), "ListUsers alone (floor): project "+o.Wide) {
		t.Errorf("markdown:\n%s", md.String())
	}
}

// TestSamplesInterleaved: the further samples of the floor and planner rows
// are taken one of each per round, not all of one strategy then all of the
// next, so that load on a shared machine falls on both alike; p99's rank and
// the planner's stages are reported.
func TestSamplesInterleaved(t *testing.T) {
	ctx := context.Background()
	org := GenerateOrg(OrgConfig{Chunks: 400, ChunksPerTicket: 2, Tenants: 1, ChunksPerProject: 100, UsersPerBucket: 1, Seed: 3})
	org.Viewers = org.Viewers[:1]
	eng, emb, _, corpus := loadOrg(t, org, 16)
	var calls []string
	fake := func(name string) Strategy {
		return Strategy{Name: name, Cheap: true, Search: func(context.Context, authz.Principal, string, []float32, int) (Outcome, error) {
			calls = append(calls, name)
			return Outcome{Status: "n/a", Stages: map[string]float64{"check": 1}}, nil
		}}
	}
	rows, err := Run(ctx, corpus, eng, emb, []Strategy{fake("a"), fake("b")}, RunConfig{K: 10, QueriesPerViewer: 1, Samples: 3, Seed: 1, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(calls, ""); got != "abbaab" {
		t.Errorf("call order %q, want the first answers (ab), then one of each per round, rotated (ba, ab)", got)
	}
	for _, r := range rows {
		if r.Samples != 3 || r.P99Rank != 1 || r.StageP50ms["check"] != 1 {
			t.Errorf("%s: %d samples, p99 rank %d, stages %v", r.Strategy, r.Samples, r.P99Rank, r.StageP50ms)
		}
	}
}

// TestRatioCIPaired: the interval resamples rounds whole: when every round's
// cold sample is 1.2 times its floor sample, however noisy the rounds, the
// p99 ratio is 1.2 in every resample; resampled independently it would not be.
func TestRatioCIPaired(t *testing.T) {
	var floor, cold []float64
	for i := range 64 {
		f := 5 + float64(i%7)*float64(i%5) // rounds of very different load
		floor = append(floor, f)
		cold = append(cold, 1.2*f)
	}
	lo, hi := ratioCI(cold, floor, 99, 0.9)
	if math.Abs(lo-1.2) > 1e-9 || math.Abs(hi-1.2) > 1e-9 {
		t.Errorf("paired interval %.3f-%.3f, want 1.2-1.2", lo, hi)
	}
	lo, hi = ratioCI(cold[:63], floor, 99, 0.9)
	if !(lo < 1.2 || hi > 1.2) || lo > hi {
		t.Errorf("unpaired interval %.3f-%.3f should spread around 1.2", lo, hi)
	}
}

// loadOrg loads org into a fresh in-memory engine and embedded store with a
// hashing embedder of dim dimensions.
func loadOrg(t *testing.T, org *Org, dim int) (*authzembedded.Engine, retrieval.Embedder, *storeembedded.Store, *Corpus) {
	t.Helper()
	eng := newEngine(t)
	emb := retrieval.NewHashing(retrieval.HashingConfig{Dim: dim})
	store, err := storeembedded.Open(context.Background(), storeembedded.Config{Meta: retrieval.IndexMeta{Model: emb.Model(), Dim: emb.Dim()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	corpus, _, err := Load(context.Background(), org, eng, store, emb, 1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	return eng, emb, store, corpus
}
