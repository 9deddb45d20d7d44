package indexer

import (
	"context"
	"slices"
	"testing"

	"github.com/clearance-dev/clearance/authz"
	authzembedded "github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/retrieval"
)

func TestReconcile(t *testing.T) {
	ctx := context.Background()
	engine, err := authzembedded.New(ctx, authzembedded.Config{Datastore: authzembedded.Memory})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	tuples := []authz.Tuple{
		{User: "tenant:acme", Relation: "tenant", Object: "project:p1"},
		{User: "tenant:acme", Relation: "tenant", Object: "project:p2"},
		{User: "tenant:other", Relation: "tenant", Object: "project:q1"},
		{User: "project:p1", Relation: "project", Object: "ticket:T-1"},
		{User: "project:p2", Relation: "project", Object: "ticket:T-2"},
		{User: "project:q1", Relation: "project", Object: "ticket:T-3"},
		{User: "project:p3", Relation: "project", Object: "ticket:T-5"},
		{User: "project:p1", Relation: "project", Object: "ticket:T-6"},
		{User: "project:p2", Relation: "project", Object: "ticket:T-6"},
		// A userset on the relation is not a project assignment.
		{User: "user:anne", Relation: "viewer", Object: "ticket:T-1"},
	}
	if err := engine.Write(ctx, tuples, nil); err != nil {
		t.Fatal(err)
	}
	emb := newEmbedder()
	s := openStore(t, "", emb)
	defer s.Close()
	c := Chunker{Words: 20, Overlap: 5}
	var rows []Row
	for i, id := range []string{"T-1", "T-2", "T-3", "T-4", "T-5", "T-6"} {
		r := genTickets(uint64(i), 1, 70)[0]
		r.ID, r.Tenant, r.Project = id, "acme", "p1"
		if id == "T-5" {
			r.Project = "p3"
		}
		rows = append(rows, r)
	}
	file := t.TempDir() + "/t.jsonl"
	writeJSONL(t, file, rows)
	src, err := NewJSONL(JSONLConfig{Path: file})
	if err != nil {
		t.Fatal(err)
	}
	runOnce(t, s, nil, src, false)

	kinds := func(rep Report, fixed bool) map[string]DriftKind {
		m := map[string]DriftKind{}
		for _, d := range rep.Drift {
			if d.Fixed != fixed && fixed {
				continue
			}
			m[d.TicketID] = d.Kind
		}
		return m
	}
	want := map[string]DriftKind{
		"T-2": DriftProject, "T-3": DriftTenant, "T-4": DriftNoTicketTuple,
		"T-5": DriftNoProjectTenant, "T-6": DriftManyProjects,
	}
	rep, err := Reconcile(ctx, ReconcileConfig{Store: s, Engine: engine})
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(rep, false); rep.Tickets != 6 || rep.Fixed != 0 || !mapsEqual(got, want) {
		t.Fatalf("report: %+v, kinds %v", rep, got)
	}
	checkStore(t, s, expected(rows), c) // a report changes nothing

	rep, err = Reconcile(ctx, ReconcileConfig{Store: s, Engine: engine, Fix: true, Embedder: emb, Chunker: c})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Fixed != 2 {
		t.Fatalf("fix: %+v", rep)
	}
	for _, d := range rep.Drift {
		if d.Fixed != slices.Contains([]string{"T-2", "T-3"}, d.TicketID) {
			t.Errorf("%s", d)
		}
	}
	fixed := expected(rows)
	t2, t3 := fixed["T-2"], fixed["T-3"]
	t2.Project = "p2"
	t3.Tenant, t3.Project = "other", "q1"
	fixed["T-2"], fixed["T-3"] = t2, t3
	checkStore(t, s, fixed, c)
	// The re-embedded ticket is found under its new tenant only.
	n, err := s.Count(ctx, retrieval.Filter{Tenant: "other", AllProjects: true})
	if err != nil || n != c.Count(t3) {
		t.Fatalf("tenant other holds %d chunks (%v), want %d", n, err, c.Count(t3))
	}

	rep, err = Reconcile(ctx, ReconcileConfig{Store: s, Engine: engine})
	if err != nil {
		t.Fatal(err)
	}
	delete(want, "T-2")
	delete(want, "T-3")
	if got := kinds(rep, false); !mapsEqual(got, want) {
		t.Fatalf("after fix: %v", got)
	}
}

func mapsEqual[K, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// dropLexical is a store whose lexical arm lost one ticket (fault injection).
type dropLexical struct {
	retrieval.Store
	lost string
}

func (d dropLexical) SearchLexical(ctx context.Context, r retrieval.LexicalRequest) (retrieval.SearchResult, error) {
	res, err := d.Store.(retrieval.LexicalSearcher).SearchLexical(ctx, r)
	res.Hits = slices.DeleteFunc(res.Hits, func(h retrieval.Hit) bool { return h.TicketID == d.lost })
	return res, err
}

// TestReconcileLexicalArm: reconcile reports a ticket the lexical arm does not
// hold, and nothing on a consistent store.
func TestReconcileLexicalArm(t *testing.T) {
	ctx := context.Background()
	engine, err := authzembedded.New(ctx, authzembedded.Config{Datastore: authzembedded.Memory})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	var tuples []authz.Tuple
	var rows []Row
	for i, id := range []string{"T-1", "T-2", "T-3"} {
		r := genTickets(uint64(i), 1, 70)[0]
		r.ID, r.Tenant, r.Project = id, "acme", "p1"
		rows = append(rows, r)
		tuples = append(tuples, authz.Tuple{User: "project:p1", Relation: "project", Object: "ticket:" + id})
	}
	tuples = append(tuples, authz.Tuple{User: "tenant:acme", Relation: "tenant", Object: "project:p1"})
	if err := engine.Write(ctx, tuples, nil); err != nil {
		t.Fatal(err)
	}
	emb := newEmbedder()
	s := openStore(t, "", emb)
	defer s.Close()
	file := t.TempDir() + "/t.jsonl"
	writeJSONL(t, file, rows)
	src, err := NewJSONL(JSONLConfig{Path: file})
	if err != nil {
		t.Fatal(err)
	}
	runOnce(t, s, nil, src, false)
	rep, err := Reconcile(ctx, ReconcileConfig{Store: s, Engine: engine})
	if err != nil || len(rep.Drift) != 0 {
		t.Fatalf("consistent store: %+v, %v", rep, err)
	}
	rep, err = Reconcile(ctx, ReconcileConfig{Store: dropLexical{Store: s, lost: "T-2"}, Engine: engine})
	if err != nil || len(rep.Drift) != 1 || rep.Drift[0].TicketID != "T-2" || rep.Drift[0].Kind != DriftLexical {
		t.Fatalf("lost lexical ticket: %+v, %v", rep, err)
	}
	// A store that can search lexically but whose index has no lexical arm (a
	// Qdrant collection created before it) is reconciled on its vectors alone.
	rep, err = Reconcile(ctx, ReconcileConfig{Store: noLexicalIndex{s}, Engine: engine})
	if err != nil || len(rep.Drift) != 0 {
		t.Fatalf("index without a lexical arm: %+v, %v", rep, err)
	}
}

// noLexicalIndex is a store type with a lexical arm whose index lacks it.
type noLexicalIndex struct{ retrieval.Store }

func (noLexicalIndex) HasLexicalIndex() bool { return false }

func (noLexicalIndex) SearchLexical(context.Context, retrieval.LexicalRequest) (retrieval.SearchResult, error) {
	return retrieval.SearchResult{}, retrieval.ErrUnsupported
}
