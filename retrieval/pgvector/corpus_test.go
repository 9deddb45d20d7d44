package pgvector

import (
	"context"
	"testing"

	"github.com/clearance-dev/clearance/internal/bench"
	"github.com/clearance-dev/clearance/retrieval"
)

// loadBenchTickets embeds the bench org's tickets with emb and upserts them,
// 500 tickets at a time with the upserts of a batch concurrent: the load of
// the measurement harnesses (TestSearchOptions, TestExactAtScale).
func loadBenchTickets(ctx context.Context, t *testing.T, s *Store, emb retrieval.Embedder, org *bench.Org) {
	t.Helper()
	const batch = 500
	for i := 0; i < len(org.Tickets); i += batch {
		ts := org.Tickets[i:min(i+batch, len(org.Tickets))]
		var texts []string
		for _, tk := range ts {
			texts = append(texts, tk.Chunks...)
		}
		vecs, err := emb.Embed(ctx, texts)
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, len(ts))
		for _, tk := range ts {
			cs := make([]retrieval.Chunk, len(tk.Chunks))
			for j := range cs {
				cs[j] = retrieval.Chunk{Ordinal: j, Text: tk.Chunks[j], Vector: vecs[0]}
				vecs = vecs[1:]
			}
			go func() { errs <- s.Upsert(ctx, tk.Ticket, cs) }()
		}
		for range ts {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
}

// viewerFilter is the store filter of one of the bench org's viewers: the
// whole tenant for an admin, else its projects and shared tickets.
func viewerFilter(v *bench.Viewer) retrieval.Filter {
	f := retrieval.Filter{Tenant: v.Principal.Tenant, AllProjects: v.Admin}
	if !v.Admin {
		for p := range v.Projects {
			f.Projects = append(f.Projects, p)
		}
		for id := range v.Shared {
			f.Tickets = append(f.Tickets, id)
		}
	}
	return f
}
