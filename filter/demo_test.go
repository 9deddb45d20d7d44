package filter_test

import (
	"bufio"
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/authz/fgafile"
	"github.com/clearance-dev/clearance/filter"
	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/retrieval"
	storeembedded "github.com/clearance-dev/clearance/retrieval/embedded"
	"github.com/clearance-dev/clearance/testdata"
)

// demo is the demo org (testdata) in the embedded engine on sqlite and the
// embedded store, indexed with the default chunker and the hashing embedder.
type demo struct {
	eng     *embedded.Engine
	store   *storeembedded.Store
	emb     *retrieval.Hashing
	tickets []retrieval.Ticket
}

func loadDemo(tb testing.TB) *demo {
	tb.Helper()
	ctx := context.Background()
	eng, err := embedded.New(ctx, embedded.Config{Datastore: embedded.SQLite, DataDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { eng.Close() })
	org, err := fgafile.Parse(testdata.OrgFGA)
	if err != nil {
		tb.Fatal(err)
	}
	if err := org.WriteTuples(ctx, eng, 0); err != nil {
		tb.Fatal(err)
	}
	d := &demo{eng: eng, emb: retrieval.NewHashing(retrieval.HashingConfig{})}
	d.store, err = storeembedded.Open(ctx, storeembedded.Config{Meta: retrieval.IndexMeta{Model: d.emb.Model(), Dim: d.emb.Dim()}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.store.Close() })
	sc := bufio.NewScanner(bytes.NewReader(testdata.Tickets))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		row, err := indexer.DecodeRow(sc.Bytes(), "ticket")
		if err != nil {
			tb.Fatal(err)
		}
		texts := indexer.Chunker{}.Chunk(row.Ticket)
		embedTexts := make([]string, len(texts))
		for i, s := range texts {
			embedTexts[i] = indexer.EmbedText(row.Title, s)
		}
		vecs, err := d.emb.Embed(ctx, embedTexts)
		if err != nil {
			tb.Fatal(err)
		}
		chunks := make([]retrieval.Chunk, len(texts))
		for i := range texts {
			chunks[i] = retrieval.Chunk{Ordinal: i, Text: texts[i], Vector: vecs[i]}
		}
		if err := d.store.Upsert(ctx, row.Ticket, chunks); err != nil {
			tb.Fatal(err)
		}
		d.tickets = append(d.tickets, row.Ticket)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return d
}

// demoPrincipals are the demo's cast, one per principal kind and path.
var demoPrincipals = []struct {
	name string
	p    authz.Principal
}{
	{"tenant_admin", user("acme", "bob")},
	{"member", user("acme", "anne")},
	{"agent", agent("acme", "anne", "copilot")},
	{"service_account", authz.Principal{Kind: authz.KindServiceAccount, Tenant: "acme", ServiceAccount: "acme-ingest", AuthMethod: "api_key"}},
	{"agent_share_only", agent("acme", "frank", "copilot")},
	{"other_tenant", user("globex", "hank")},
	// acme-ingest's key minted by bob (tenant admin, blocked on DOCS-2).
	{"minted_key", authz.Principal{Kind: authz.KindServiceAccount, Tenant: "acme", ServiceAccount: "acme-ingest", KeyMinter: "bob", AuthMethod: "api_key"}},
}

// TestDemoOrgMatchesEngine: on the demo org, a broad search returns exactly the
// tickets the engine's own Check allows, for every principal of the demo.
func TestDemoOrgMatchesEngine(t *testing.T) {
	ctx := context.Background()
	d := loadDemo(t)
	pl := filter.New(filter.Config{}, d.eng, d.store, d.emb, &filter.MemoryLog{})
	for _, c := range demoPrincipals {
		var want []string
		for _, tk := range d.tickets {
			if tk.Tenant != c.p.Tenant {
				continue
			}
			ok := true
			for _, check := range c.p.ViewChecks("ticket:" + tk.ID) {
				allowed, err := d.eng.Check(ctx, authz.Query{ContextualTuples: c.p.ContextualTuples(), Consistency: authz.HigherConsistency}, check)
				if err != nil {
					t.Fatal(err)
				}
				ok = ok && allowed
			}
			if ok {
				want = append(want, tk.ID)
			}
		}
		slices.Sort(want)
		resp, err := pl.Search(ctx, c.p, filter.Request{Query: "login timeout error customer", TopK: 100, GroupByTicket: true})
		if err != nil {
			t.Fatal(err)
		}
		got := ids(resp)
		if len(want) > 100 { // capped by top_k: a subset of exactly 100
			if len(got) != 100 || resp.Status != filter.Complete || slices.ContainsFunc(got, func(id string) bool { return !slices.Contains(want, id) }) {
				t.Errorf("%s: got %d (%s), engine allows %d", c.name, len(got), resp.Status, len(want))
			}
		} else if !slices.Equal(got, want) || resp.Status != filter.Exhausted {
			t.Errorf("%s: got %v (%s), engine allows %v", c.name, got, resp.Status, want)
		}
		t.Logf("%s: %d tickets, %s", c.name, len(resp.Results), resp.Status)
	}
}
