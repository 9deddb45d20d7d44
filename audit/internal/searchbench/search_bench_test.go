package searchbench

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/audit/filelog"
	"github.com/clearance-dev/clearance/authz"
	fgaembedded "github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/authz/fgafile"
	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/retrieval"
	storeembedded "github.com/clearance-dev/clearance/retrieval/embedded"
	"github.com/clearance-dev/clearance/testdata"
)

var queries = []string{
	"checkout latency spike after deploy", "password reset email not delivered", "invoice numbering gap",
	"API keys of offboarded contractors", "audit log for account admins", "timeout calling the payment provider",
	"weak password policy", "export to csv fails", "mobile app crashes on login", "evidence request auditors",
}

// BenchmarkSearchAudit runs the read path of a search on the demo org with the
// real components (hashing embedder, embedded store, embedded OpenFGA on its memory datastore:
// ListObjects pre-filter, vector search, BatchCheck post-filter with higher
// consistency) and builds the audit record, then either appends it durably
// (audit=file: fsync'd group commit) or drops it (audit=off), interleaved in
// one run so both see the same machine load.
//
//	go test ./audit/internal/searchbench -run '^$' -bench SearchAudit -benchtime 3000x
func BenchmarkSearchAudit(b *testing.B) {
	ctx := context.Background()
	e, err := fgaembedded.New(ctx, fgaembedded.Config{Datastore: fgaembedded.Memory})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	org, err := fgafile.Parse(testdata.OrgFGA)
	if err != nil {
		b.Fatal(err)
	}
	if err := org.WriteTuples(ctx, e, 0); err != nil {
		b.Fatal(err)
	}
	emb := retrieval.NewHashing(retrieval.HashingConfig{})
	st, err := storeembedded.Open(ctx, storeembedded.Config{Meta: retrieval.IndexMeta{Model: emb.Model(), Dim: emb.Dim()}})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ix, err := indexer.New(indexer.Config{Store: st, Embedder: emb})
	if err != nil {
		b.Fatal(err)
	}
	if sum, err := ix.Run(ctx, indexer.NewJSONLData("demo", testdata.Tickets, 256)); err != nil || sum.Failed > 0 {
		b.Fatalf("index: %v", err)
	}
	log, err := filelog.Open(ctx, filelog.Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()

	p := authz.Principal{Kind: authz.KindUser, Tenant: "acme", User: "anne", AuthMethod: "jwt", Scopes: []string{"tickets:read"}}
	var appendLat []time.Duration
	search := func(q string, withAudit bool) error {
		t0 := time.Now()
		rec := &audit.Record{Kind: "search", Tenant: p.Tenant, Principal: p, Query: q, TopK: 10, Latency: map[string]int64{}}
		var projects []string
		for id, err := range e.ListObjects(ctx, authz.Query{}, p.Subject(), p.ViewRelation(), "project") {
			if err != nil {
				return err
			}
			projects = append(projects, id)
		}
		vecs, err := emb.Embed(ctx, []string{q})
		if err != nil {
			return err
		}
		hits, err := st.Search(ctx, retrieval.SearchRequest{Vector: vecs[0], Filter: retrieval.Filter{Tenant: p.Tenant, Projects: projects}, K: 20})
		if err != nil {
			return err
		}
		checks := make([]authz.Check, len(hits))
		for i, h := range hits {
			checks[i] = authz.Check{User: p.Subject(), Relation: p.ViewRelation(), Object: "ticket:" + h.TicketID}
		}
		ok, err := e.BatchCheck(ctx, authz.Query{Consistency: authz.HigherConsistency}, checks)
		if err != nil {
			return err
		}
		returned := 0
		for i, h := range hits {
			d := audit.DeniedByCheck
			if ok[i] {
				d = audit.BeyondK
				if returned < 10 {
					d, returned = audit.Returned, returned+1
				}
			}
			rec.Results = append(rec.Results, audit.Candidate{TicketID: h.TicketID, Project: h.Project, Chunk: h.Ordinal, Score: h.Score, Decision: d})
		}
		rec.Plan = audit.Plan{Path: "prefilter", AllowedProjects: len(projects), Rounds: 1, Fetched: len(hits), Checked: len(hits)}
		rec.Status, rec.ModelID, rec.Consistency = "complete", e.ModelID(), "HIGHER_CONSISTENCY"
		rec.Latency["total"] = time.Since(t0).Microseconds()
		if withAudit {
			t1 := time.Now()
			err := log.Append(ctx, rec)
			appendLat = append(appendLat, time.Since(t1))
			return err
		}
		return nil
	}

	lat := map[bool][]time.Duration{}
	b.ResetTimer()
	for i := range b.N {
		with := i%2 == 1
		t0 := time.Now()
		if err := search(queries[i%len(queries)], with); err != nil {
			b.Fatal(err)
		}
		lat[with] = append(lat[with], time.Since(t0))
	}
	b.StopTimer()
	if len(lat[true]) == 0 || len(lat[false]) == 0 {
		return // the 1-iteration probe run
	}
	pct := func(d []time.Duration, q float64) float64 {
		slices.Sort(d)
		return float64(d[int(float64(len(d)-1)*q)].Microseconds()) / 1000
	}
	for _, with := range []bool{false, true} {
		name := map[bool]string{false: "off", true: "file"}[with]
		b.ReportMetric(pct(lat[with], 0.5), "p50_ms_audit_"+name)
		b.ReportMetric(pct(lat[with], 0.99), "p99_ms_audit_"+name)
	}
	b.ReportMetric(pct(appendLat, 0.5), "p50_ms_append")
	off, on := pct(lat[false], 0.5), pct(lat[true], 0.5)
	b.ReportMetric(100*(on-off)/off, "p50_overhead_%")
}
