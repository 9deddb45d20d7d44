// Package qdrant is a retrieval.Store on a Qdrant server (gRPC, qdrant/go-client).
//
// Two collections per index: <prefix>_chunks holds one point per chunk (vector and
// payload tenant, project, ticket, ordinal, title, text) with keyword payload
// indexes on tenant (is_tenant, so Qdrant keeps each tenant's points together),
// project and ticket; <prefix>_tickets holds one point per ticket (a 1-dimensional
// placeholder vector and the ticket's fields as payload) and the index's embedding
// space. Point ids are UUIDs derived from (ticket id, ordinal), so a re-upsert
// overwrites points in place.
//
// Tenant isolation is always in our filter (must tenant = T), never in Qdrant's
// auth: Qdrant deprecated JWT payload filters in 1.16.
//
// The lexical arm (lexical.go) keeps each chunk's terms in the chunk's own
// point (a sparse vector of term frequencies and keyword payload) and
// computes BM25 in Go from counts taken under the search's filter.
//
// Qdrant has no multi-point transactions. Upsert writes the new chunk points
// (replacing same-ordinal points), then deletes the ticket's other points, then
// writes the ticket point: between the first and second step a search can see new
// chunks next to old surplus ordinals, and during the first step a mix of old and
// new chunks (docs/retrieval.md). The ticket point is written last so that its
// content hash never certifies chunks that were not written. Writes of one ticket
// are serialised within a process; two processes writing the same ticket at once
// can interleave (run one indexer per index).
package qdrant

import (
	"cmp"
	"context"
	"crypto/sha1"
	"fmt"
	"hash/fnv"
	"iter"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/retrieval"
)

// Config configures the store. URL and Meta are required.
type Config struct {
	// URL is the server's gRPC address: host:port (default port 6334), or
	// http(s)://host:port (https turns on TLS).
	URL string
	// APIKey is sent with every request when set.
	APIKey string
	// Collection is the prefix of the two collection names (default "clearance").
	Collection string
	// Meta is the embedding space; an index created with another is refused with
	// retrieval.ErrIndexMismatch.
	Meta retrieval.IndexMeta
	// Exact makes every search a full scan of the filtered points (recall 1).
	// Otherwise Qdrant's planner picks: it scans exactly when the payload index
	// says the filter is selective and uses filtered HNSW otherwise.
	Exact bool
	// HnswEf is the search-time ef (default: Qdrant's, the collection's ef_construct).
	HnswEf int
	// LexicalMaxPostings bounds the postings (chunks holding a query term,
	// counted once per term) one lexical search reads (default
	// DefaultLexicalMaxPostings). A search whose terms hold more under its
	// filter reads every posting of its rarer terms and the best of the
	// rest, and answers exact:false (PlanBM25Capped).
	LexicalMaxPostings int
	// Timeout bounds each operation that has no earlier context deadline (default 30s).
	Timeout time.Duration
	// Logger receives debug lines (never texts or keys). Default: discard.
	Logger *slog.Logger
}

// Store is a Qdrant-backed retrieval.Store. It is safe for concurrent use.
type Store struct {
	// locks serialise writes of one ticket within this process (by a hash of its
	// id): Qdrant would interleave two upserts' write-then-delete steps.
	locks   [64]sync.Mutex
	c       *qdrant.Client
	cfg     Config
	chunks  string
	tickets string
	log     *slog.Logger
	// lex: the chunks collection has the lexical arm's sparse vector (a
	// collection created before it has not; the 1.17 client cannot add one).
	lex bool
	// lexWarned is when (unix seconds) a lexical search last warned that it
	// answered exact:false for disagreeing reads.
	lexWarned atomic.Int64
}

var (
	_ retrieval.Store           = (*Store)(nil)
	_ retrieval.LexicalSearcher = (*Store)(nil)
)

// Payload keys.
const (
	keyTenant   = "tenant"
	keyProject  = "project"
	keyTicket   = "ticket"
	keyOrdinal  = "ordinal"
	keyTitle    = "title"
	keyText     = "text"
	keyKind     = "kind" // tickets collection: "ticket" or "meta"
	keyBody     = "body"
	keyUpdated  = "updated_at"
	keyHash     = "content_hash"
	keyChunks   = "chunks"
	keyModel    = "model"
	keyDim      = "dim"
	kindTicket  = "ticket"
	kindMeta    = "meta"
	ticketsPage = 256
)

// Open connects, creates the collections and payload indexes if missing, and
// checks (or records) the embedding space.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Meta.Model == "" {
		return nil, clearance.Invalid("meta.model", "must not be empty")
	}
	if cfg.Meta.Dim <= 0 {
		return nil, clearance.Invalid("meta.dim", "must be positive, got %d", cfg.Meta.Dim)
	}
	if cfg.Collection == "" {
		cfg.Collection = "clearance"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.LexicalMaxPostings <= 0 {
		cfg.LexicalMaxPostings = DefaultLexicalMaxPostings
	}
	qc, err := clientConfig(cfg)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := qdrant.NewClient(qc)
	if err != nil {
		return nil, unavailable("connect", err)
	}
	s := &Store{c: c, cfg: cfg, chunks: cfg.Collection + "_chunks", tickets: cfg.Collection + "_tickets", log: log}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := s.setup(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// clientConfig turns Config.URL into the client's host, port and TLS settings.
func clientConfig(cfg Config) (*qdrant.Config, error) {
	raw := cfg.URL
	if raw == "" {
		return nil, clearance.Invalid("url", "must not be empty")
	}
	tls := false
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, clearance.Invalid("url", "%v", err)
		}
		switch u.Scheme {
		case "http", "grpc":
		case "https", "grpcs":
			tls = true
		default:
			return nil, clearance.Invalid("url", "scheme must be http or https, got %q", u.Scheme)
		}
		raw = u.Host
	}
	host, portStr, err := net.SplitHostPort(raw)
	if err != nil {
		host, portStr = raw, "6334"
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 || host == "" {
		return nil, clearance.Invalid("url", "want host:port, got %q", cfg.URL)
	}
	// A lexical search's postings come back in one message, about 100 bytes
	// each; gRPC's default limit (4 MiB) would cut a search at 40,000.
	recv := grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(min(1<<30, max(64<<20, 256*cfg.LexicalMaxPostings))))
	return &qdrant.Config{Host: host, Port: port, APIKey: cfg.APIKey, UseTLS: tls, SkipCompatibilityCheck: true,
		GrpcOptions: []grpc.DialOption{recv}}, nil
}

func unavailable(op string, err error) error {
	return fmt.Errorf("qdrant: %s: %w: %w", op, retrieval.ErrUnavailable, err)
}

func (s *Store) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// setup creates missing collections and indexes and checks the embedding space.
func (s *Store) setup(ctx context.Context) error {
	wait := true
	create := func(name string, size uint64, indexes map[string]bool, sparse bool) error {
		ok, err := s.c.CollectionExists(ctx, name)
		if err != nil {
			return unavailable("open", err)
		}
		if ok {
			return nil
		}
		cc := &qdrant.CreateCollection{
			CollectionName: name,
			VectorsConfig:  qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: size, Distance: qdrant.Distance_Cosine}),
		}
		if sparse {
			// No modifier: values are our term frequencies, and the
			// statistics are computed per filter, not by Qdrant.
			cc.SparseVectorsConfig = qdrant.NewSparseVectorsConfig(map[string]*qdrant.SparseVectorParams{lexVector: {}})
		}
		if err = s.c.CreateCollection(ctx, cc); err != nil {
			return unavailable("create collection "+name, err)
		}
		for field, tenant := range indexes {
			params := &qdrant.KeywordIndexParams{}
			if tenant {
				params.IsTenant = &tenant
			}
			_, err := s.c.CreateFieldIndex(ctx, &qdrant.CreateFieldIndexCollection{
				CollectionName:   name,
				Wait:             &wait,
				FieldName:        field,
				FieldType:        qdrant.FieldType_FieldTypeKeyword.Enum(),
				FieldIndexParams: qdrant.NewPayloadIndexParamsKeyword(params),
			})
			if err != nil {
				return unavailable("create payload index "+field, err)
			}
		}
		s.log.InfoContext(ctx, "qdrant collection created", "collection", name)
		return nil
	}
	if err := create(s.chunks, uint64(s.cfg.Meta.Dim), map[string]bool{keyTenant: true, keyProject: false, keyTicket: false}, true); err != nil {
		return err
	}
	if err := create(s.tickets, 1, map[string]bool{keyKind: false}, false); err != nil {
		return err
	}
	info, err := s.c.GetCollectionInfo(ctx, s.chunks)
	if err != nil {
		return unavailable("open", err)
	}
	if size := info.GetConfig().GetParams().GetVectorsConfig().GetParams().GetSize(); size != uint64(s.cfg.Meta.Dim) {
		return fmt.Errorf("qdrant: collection %s has %d dimensions, opened with %d: %w", s.chunks, size, s.cfg.Meta.Dim, retrieval.ErrIndexMismatch)
	}
	_, s.lex = info.GetConfig().GetParams().GetSparseVectorsConfig().GetMap()[lexVector]
	if !s.lex {
		s.log.WarnContext(ctx, "qdrant collection has no lexical index (created before it): lexical and hybrid searches answer unsupported; index into a new collection to get one", "collection", s.chunks)
	}
	// The lexical payload indexes, created here rather than with the
	// collection so that an open interrupted between the two completes them:
	// lex_terms serves the per-term Count and the postings' condition;
	// lex_len, an integer index with lookups, is what Facet sums.
	lookup, no := true, false
	for _, ix := range []struct {
		field  string
		typ    qdrant.FieldType
		params *qdrant.PayloadIndexParams
	}{
		{keyLexTerms, qdrant.FieldType_FieldTypeKeyword, qdrant.NewPayloadIndexParamsKeyword(&qdrant.KeywordIndexParams{})},
		{keyLexLen, qdrant.FieldType_FieldTypeInteger, qdrant.NewPayloadIndexParamsInt(&qdrant.IntegerIndexParams{Lookup: &lookup, Range: &no})},
	} {
		if _, ok := info.GetPayloadSchema()[ix.field]; ok || !s.lex {
			continue
		}
		_, err := s.c.CreateFieldIndex(ctx, &qdrant.CreateFieldIndexCollection{
			CollectionName: s.chunks, Wait: &wait, FieldName: ix.field, FieldType: ix.typ.Enum(), FieldIndexParams: ix.params,
		})
		if err != nil {
			return unavailable("create payload index "+ix.field, err)
		}
	}
	pts, err := s.c.Get(ctx, &qdrant.GetPoints{
		CollectionName: s.tickets, Ids: []*qdrant.PointId{metaID()}, WithPayload: qdrant.NewWithPayload(true),
	})
	if err != nil {
		return unavailable("open", err)
	}
	if len(pts) == 0 {
		_, err := s.c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: s.tickets, Wait: &wait, Points: []*qdrant.PointStruct{{
			Id:      metaID(),
			Vectors: qdrant.NewVectors(1),
			Payload: qdrant.NewValueMap(map[string]any{keyKind: kindMeta, keyModel: s.cfg.Meta.Model, keyDim: int64(s.cfg.Meta.Dim)}),
		}}})
		if err != nil {
			return unavailable("open", err)
		}
		return nil
	}
	p := pts[0].GetPayload()
	have := retrieval.IndexMeta{Model: p[keyModel].GetStringValue(), Dim: int(p[keyDim].GetIntegerValue())}
	if have != s.cfg.Meta {
		return fmt.Errorf("qdrant: index has model %q dim %d, opened with model %q dim %d: %w",
			have.Model, have.Dim, s.cfg.Meta.Model, s.cfg.Meta.Dim, retrieval.ErrIndexMismatch)
	}
	return nil
}

// pointID is a name-based (version 5 style) UUID of name, stable across processes.
func pointID(name string) *qdrant.PointId {
	h := sha1.Sum([]byte("clearance\x00" + name))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return qdrant.NewIDUUID(fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16]))
}

func chunkID(ticket string, ordinal int) *qdrant.PointId {
	return pointID("chunk\x00" + ticket + "\x00" + strconv.Itoa(ordinal))
}

func ticketID(ticket string) *qdrant.PointId { return pointID("ticket\x00" + ticket) }

func metaID() *qdrant.PointId { return pointID("meta") }

func (s *Store) lock(id string) func() {
	h := fnv.New32a()
	h.Write([]byte(id))
	m := &s.locks[h.Sum32()%uint32(len(s.locks))]
	m.Lock()
	return m.Unlock
}

func ticketFilter(id string) *qdrant.Filter {
	return &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword(keyTicket, id)}}
}

// Upsert implements retrieval.Store (see the package comment for the window in
// which a reader can see a mix of old and new chunks).
func (s *Store) Upsert(ctx context.Context, t retrieval.Ticket, chunks []retrieval.Chunk) error {
	if err := retrieval.CheckUpsert(t, chunks, s.cfg.Meta.Dim); err != nil {
		return err
	}
	defer s.lock(t.ID)()
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	wait := true
	ids := make([]*qdrant.PointId, len(chunks))
	if len(chunks) > 0 {
		pts := make([]*qdrant.PointStruct, len(chunks))
		for i, c := range chunks {
			p, err := chunkPoint(t, c, s.lex)
			if err != nil { // CheckUpsert already refused invalid UTF-8
				return clearance.Invalid(fmt.Sprintf("chunks[%d]", i), "%v", err)
			}
			ids[i], pts[i] = p.Id, p
		}
		if _, err := s.c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: s.chunks, Wait: &wait, Points: pts}); err != nil {
			return unavailable("upsert", err)
		}
	}
	stale := ticketFilter(t.ID)
	if len(ids) > 0 {
		stale.MustNot = []*qdrant.Condition{qdrant.NewHasID(ids...)}
	}
	if _, err := s.c.Delete(ctx, &qdrant.DeletePoints{CollectionName: s.chunks, Wait: &wait, Points: qdrant.NewPointsSelectorFilter(stale)}); err != nil {
		return unavailable("upsert", err)
	}
	payload, err := qdrant.TryValueMap(map[string]any{
		keyKind: kindTicket, keyTicket: t.ID, keyTenant: t.Tenant, keyProject: t.Project,
		keyTitle: t.Title, keyBody: t.Body, keyUpdated: t.UpdatedAt.UTC().Format(time.RFC3339Nano),
		keyHash: t.ContentHash, keyChunks: int64(len(chunks)),
	})
	if err != nil {
		return clearance.Invalid("ticket", "%v", err)
	}
	_, err = s.c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: s.tickets, Wait: &wait, Points: []*qdrant.PointStruct{{
		Id: ticketID(t.ID), Vectors: qdrant.NewVectors(1), Payload: payload,
	}}})
	if err != nil {
		return unavailable("upsert", err)
	}
	return nil
}

// chunkPoint is the point of chunk c of t: its dense vector (the collection's
// unnamed one) and payload, and with lex the lexical arm's sparse vector and
// fields, which so travel in the chunk's own point and change with its text
// in the same write.
func chunkPoint(t retrieval.Ticket, c retrieval.Chunk, lex bool) (*qdrant.PointStruct, error) {
	fields := map[string]any{
		keyTenant: t.Tenant, keyProject: t.Project, keyTicket: t.ID,
		keyOrdinal: int64(c.Ordinal), keyTitle: t.Title, keyText: c.Text,
	}
	vectors := qdrant.NewVectorsDense(c.Vector)
	if lex {
		d := analyzeChunk(t.ID, t.Title, c.Text)
		d.payload(fields)
		named := map[string]*qdrant.Vector{"": qdrant.NewVectorDense(c.Vector)} // "": Qdrant's default vector
		if len(d.indices) > 0 {
			named[lexVector] = qdrant.NewVectorSparse(d.indices, d.values)
		}
		vectors = qdrant.NewVectorsMap(named)
	}
	payload, err := qdrant.TryValueMap(fields)
	if err != nil {
		return nil, err
	}
	return &qdrant.PointStruct{Id: chunkID(t.ID, c.Ordinal), Vectors: vectors, Payload: payload}, nil
}

// Delete implements retrieval.Store: chunks first, so a failure half way leaves a
// ticket that the next sync deletes again, never chunks without a ticket record.
func (s *Store) Delete(ctx context.Context, id string) error {
	defer s.lock(id)()
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	wait := true
	if _, err := s.c.Delete(ctx, &qdrant.DeletePoints{CollectionName: s.chunks, Wait: &wait, Points: qdrant.NewPointsSelectorFilter(ticketFilter(id))}); err != nil {
		return unavailable("delete", err)
	}
	if _, err := s.c.Delete(ctx, &qdrant.DeletePoints{CollectionName: s.tickets, Wait: &wait, Points: qdrant.NewPointsSelector(ticketID(id))}); err != nil {
		return unavailable("delete", err)
	}
	return nil
}

// Move implements retrieval.Store. The chunks' project changes in one payload
// update (per point, not atomically across points).
func (s *Store) Move(ctx context.Context, id, project string) error {
	if err := retrieval.CheckMove(id, project); err != nil {
		return err
	}
	defer s.lock(id)()
	if _, err := s.Get(ctx, id); err != nil {
		return err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	wait := true
	set := qdrant.NewValueMap(map[string]any{keyProject: project})
	if _, err := s.c.SetPayload(ctx, &qdrant.SetPayloadPoints{CollectionName: s.chunks, Wait: &wait, Payload: set,
		PointsSelector: qdrant.NewPointsSelectorFilter(ticketFilter(id))}); err != nil {
		return unavailable("move", err)
	}
	if _, err := s.c.SetPayload(ctx, &qdrant.SetPayloadPoints{CollectionName: s.tickets, Wait: &wait, Payload: set,
		PointsSelector: qdrant.NewPointsSelector(ticketID(id))}); err != nil {
		return unavailable("move", err)
	}
	return nil
}

// Get implements retrieval.Store.
func (s *Store) Get(ctx context.Context, id string) (retrieval.Ticket, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	pts, err := s.c.Get(ctx, &qdrant.GetPoints{CollectionName: s.tickets, Ids: []*qdrant.PointId{ticketID(id)}, WithPayload: qdrant.NewWithPayload(true)})
	if err != nil {
		return retrieval.Ticket{}, unavailable("get", err)
	}
	if len(pts) == 0 {
		return retrieval.Ticket{}, fmt.Errorf("get %q: %w", id, retrieval.ErrNotFound)
	}
	t, _ := ticketFromPayload(pts[0].GetPayload())
	return t, nil
}

func ticketFromPayload(p map[string]*qdrant.Value) (retrieval.Ticket, int) {
	t := retrieval.Ticket{
		ID: p[keyTicket].GetStringValue(), Tenant: p[keyTenant].GetStringValue(), Project: p[keyProject].GetStringValue(),
		Title: p[keyTitle].GetStringValue(), Body: p[keyBody].GetStringValue(), ContentHash: p[keyHash].GetStringValue(),
	}
	t.UpdatedAt, _ = time.Parse(time.RFC3339Nano, p[keyUpdated].GetStringValue())
	return t, int(p[keyChunks].GetIntegerValue())
}

// filter translates f: must tenant, and unless AllProjects, should (at least one
// of) project in P, ticket in D.
func filter(f retrieval.Filter) *qdrant.Filter {
	q := &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword(keyTenant, f.Tenant)}}
	if f.AllProjects {
		return q
	}
	if len(f.Projects) > 0 {
		q.Should = append(q.Should, qdrant.NewMatchKeywords(keyProject, f.Projects...))
	}
	if len(f.Tickets) > 0 {
		q.Should = append(q.Should, qdrant.NewMatchKeywords(keyTicket, f.Tickets...))
	}
	return q
}

// Count implements retrieval.Store.
func (s *Store) Count(ctx context.Context, f retrieval.Filter) (int, error) {
	if f.Empty() {
		return 0, nil
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	exact := true
	n, err := s.c.Count(ctx, &qdrant.CountPoints{CollectionName: s.chunks, Filter: filter(f), Exact: &exact})
	if err != nil {
		return 0, unavailable("count", err)
	}
	return int(n), nil
}

// tieSlack is how many candidates beyond offset+k a search fetches, so chunks
// tied with the last one are all seen and ordered by (ticket, ordinal) here:
// Qdrant orders ties by point id.
const tieSlack = 16

// Search implements retrieval.Store.
func (s *Store) Search(ctx context.Context, r retrieval.SearchRequest) (retrieval.SearchResult, error) {
	hits, err := s.search(ctx, r)
	if err != nil {
		return retrieval.SearchResult{}, err
	}
	// Qdrant may answer a selective filter from its payload index by full scan,
	// but it does not say which it did: only a search forced exact claims it.
	if s.cfg.Exact {
		return retrieval.SearchResult{Hits: hits, Plan: retrieval.PlanExact, Exact: true}, nil
	}
	return retrieval.SearchResult{Hits: hits, Plan: retrieval.PlanHNSW}, nil
}

func (s *Store) search(ctx context.Context, r retrieval.SearchRequest) ([]retrieval.Hit, error) {
	if err := retrieval.CheckSearch(r, s.cfg.Meta.Dim); err != nil {
		return nil, err
	}
	if r.Filter.Empty() {
		return nil, nil
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	limit := uint64(r.Offset + r.K + tieSlack)
	params := &qdrant.SearchParams{}
	if s.cfg.Exact {
		params.Exact = &s.cfg.Exact
	}
	if s.cfg.HnswEf > 0 {
		ef := uint64(max(s.cfg.HnswEf, int(limit)))
		params.HnswEf = &ef
	}
	pts, err := s.c.Query(ctx, &qdrant.QueryPoints{
		CollectionName: s.chunks,
		Query:          qdrant.NewQueryDense(r.Vector),
		Filter:         filter(r.Filter),
		Params:         params,
		Limit:          &limit,
		WithPayload:    qdrant.NewWithPayloadInclude(keyTenant, keyProject, keyTicket, keyOrdinal, keyTitle, keyText),
	})
	if err != nil {
		return nil, unavailable("search", err)
	}
	hits := make([]retrieval.Hit, len(pts))
	for i, p := range pts {
		pl := p.GetPayload()
		hits[i] = retrieval.Hit{
			TicketID: pl[keyTicket].GetStringValue(), Tenant: pl[keyTenant].GetStringValue(),
			Project: pl[keyProject].GetStringValue(), Title: pl[keyTitle].GetStringValue(),
			Ordinal: int(pl[keyOrdinal].GetIntegerValue()), Text: pl[keyText].GetStringValue(), Score: p.GetScore(),
		}
	}
	slices.SortFunc(hits, func(a, b retrieval.Hit) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		if c := strings.Compare(a.TicketID, b.TicketID); c != 0 {
			return c
		}
		return cmp.Compare(a.Ordinal, b.Ordinal)
	})
	if r.Offset >= len(hits) {
		return nil, nil
	}
	hits = hits[r.Offset:]
	return hits[:min(r.K, len(hits))], nil
}

// Tickets implements retrieval.Store, scrolling the tickets collection by pages.
func (s *Store) Tickets(ctx context.Context) iter.Seq2[retrieval.TicketRef, error] {
	return func(yield func(retrieval.TicketRef, error) bool) {
		var offset *qdrant.PointId
		page := uint32(ticketsPage)
		for {
			pts, next, err := s.c.ScrollAndOffset(ctx, &qdrant.ScrollPoints{
				CollectionName: s.tickets,
				Filter:         &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword(keyKind, kindTicket)}},
				Offset:         offset,
				Limit:          &page,
				WithPayload:    qdrant.NewWithPayloadExclude(keyBody, keyTitle),
			})
			if err != nil {
				yield(retrieval.TicketRef{}, unavailable("tickets", err))
				return
			}
			for _, p := range pts {
				t, n := ticketFromPayload(p.GetPayload())
				ref := retrieval.TicketRef{ID: t.ID, Tenant: t.Tenant, Project: t.Project, UpdatedAt: t.UpdatedAt, ContentHash: t.ContentHash, Chunks: n}
				if !yield(ref, nil) {
					return
				}
			}
			if next == nil || len(pts) == 0 {
				return
			}
			offset = next
		}
	}
}

// Stats implements retrieval.Store.
func (s *Store) Stats(ctx context.Context) (retrieval.Stats, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	st := retrieval.Stats{Dim: s.cfg.Meta.Dim, Model: s.cfg.Meta.Model, Backend: "qdrant"}
	exact := true
	chunks, err := s.c.Count(ctx, &qdrant.CountPoints{CollectionName: s.chunks, Exact: &exact})
	if err != nil {
		return st, unavailable("stats", err)
	}
	tickets, err := s.c.Count(ctx, &qdrant.CountPoints{CollectionName: s.tickets, Exact: &exact,
		Filter: &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword(keyKind, kindTicket)}}})
	if err != nil {
		return st, unavailable("stats", err)
	}
	st.Tickets, st.Chunks = int(tickets), int(chunks)
	return st, nil
}

// HasLexicalIndex reports whether the chunks collection has the lexical
// arm's sparse vector: false for a collection created before it, whose
// lexical searches answer retrieval.ErrUnsupported.
func (s *Store) HasLexicalIndex() bool { return s.lex }

// Close closes the gRPC connections.
func (s *Store) Close() error { return s.c.Close() }

// Drop deletes both collections of the index (tests, and operators resetting an
// index built with another model).
func (s *Store) Drop(ctx context.Context) error {
	for _, name := range []string{s.chunks, s.tickets} {
		if err := s.c.DeleteCollection(ctx, name); err != nil {
			return unavailable("drop", err)
		}
	}
	return nil
}
