package telemetry

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/clearance-dev/clearance/retrieval"
)

// PlannerStore is what the planner reads from the vector store (filter.Store).
type PlannerStore interface {
	Search(ctx context.Context, r retrieval.SearchRequest) (retrieval.SearchResult, error)
	Get(ctx context.Context, ticketID string) (retrieval.Ticket, error)
}

// PlannerEmbedder is what the planner embeds queries with (filter.Embedder).
type PlannerEmbedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

type store struct {
	inner PlannerStore
	t     *Telemetry
}

// Store wraps the planner's view of the vector store: one span (store.Search)
// and one clearance_store_searches_total count per search round, by plan.
// Only the planner's reads are wrapped; the indexer writes to the store itself.
// A store with a lexical index stays one (retrieval.LexicalSearcher), its
// lexical searches counted and traced the same way (store.SearchLexical, plan
// bm25), so wrapping never turns a hybrid search into an unsupported one.
func (m *Telemetry) Store(s PlannerStore) PlannerStore {
	st := &store{inner: s, t: m}
	if l, ok := s.(retrieval.LexicalSearcher); ok {
		return &lexicalStore{store: st, lex: l}
	}
	return st
}

type lexicalStore struct {
	*store
	lex retrieval.LexicalSearcher
}

func (s *lexicalStore) SearchLexical(ctx context.Context, r retrieval.LexicalRequest) (retrieval.SearchResult, error) {
	return s.observe(ctx, "store.SearchLexical", func(ctx context.Context) (retrieval.SearchResult, error) { return s.lex.SearchLexical(ctx, r) },
		attribute.Int("store.k", r.K), attribute.Int("store.offset", r.Offset), attribute.Int("store.terms", len(r.Terms)))
}

func (s *store) Search(ctx context.Context, r retrieval.SearchRequest) (retrieval.SearchResult, error) {
	return s.observe(ctx, "store.Search", func(ctx context.Context) (retrieval.SearchResult, error) { return s.inner.Search(ctx, r) },
		attribute.Int("store.k", r.K), attribute.Int("store.offset", r.Offset))
}

// observe runs one search round under a span called name and counts it by the
// plan the store reports ("none" when it failed or named none).
func (s *store) observe(ctx context.Context, name string, search func(context.Context) (retrieval.SearchResult, error), attrs ...attribute.KeyValue) (retrieval.SearchResult, error) {
	start := time.Now()
	ctx, span := s.t.start(ctx, name, attrs...)
	res, err := search(ctx)
	plan := res.Plan
	if err != nil || plan == "" {
		plan = "none"
	}
	s.t.storeDuration.WithLabelValues(plan).Observe(seconds(start))
	s.t.storeSearches.WithLabelValues(plan, Outcome(err)).Inc()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("store.plan", plan), attribute.Int("store.hits", len(res.Hits)), attribute.Bool("store.exact", res.Exact))
	}
	end(span, err)
	return res, err
}

func (s *store) Get(ctx context.Context, id string) (t retrieval.Ticket, err error) {
	start := time.Now()
	ctx, span := s.t.start(ctx, "store.Get")
	t, err = s.inner.Get(ctx, id)
	s.t.storeGetDur.Observe(seconds(start))
	s.t.storeGets.WithLabelValues(Outcome(err)).Inc()
	// A missing ticket is an answer, not a failure of the store.
	if Outcome(err) == OutcomeNotFound {
		end(span, nil)
	} else {
		end(span, err)
	}
	return t, err
}

type embedder struct {
	inner PlannerEmbedder
	t     *Telemetry
}

// Embedder wraps the planner's query embedder (span embed, clearance_embed_*).
func (m *Telemetry) Embedder(e PlannerEmbedder) PlannerEmbedder { return &embedder{inner: e, t: m} }

func (e *embedder) Embed(ctx context.Context, texts []string) (v [][]float32, err error) {
	start := time.Now()
	ctx, span := e.t.start(ctx, "embed", attribute.Int("embed.texts", len(texts)))
	v, err = e.inner.Embed(ctx, texts)
	e.t.embedDuration.Observe(seconds(start))
	e.t.embedCalls.WithLabelValues(Outcome(err)).Inc()
	end(span, err)
	return v, err
}
