package indexer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/retrieval"
)

// eventLog records what happened, in order, across goroutines.
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(e string) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) index(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.IndexFunc(l.events, func(e string) bool { return strings.HasPrefix(e, prefix) })
}

// batchEmbedder logs "embed <batch>" for each batch whose texts it embeds
// (texts carry their ticket id in the title, "B<batch>-...") and signals the
// first embedding of each batch.
type batchEmbedder struct {
	retrieval.Embedder
	log     *eventLog
	mu      sync.Mutex
	started map[string]chan struct{}
}

func (e *batchEmbedder) seen(batch string) chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.started[batch]
	if !ok {
		c = make(chan struct{})
		e.started[batch] = c
	}
	return c
}

func (e *batchEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	for _, t := range texts {
		batch, _, _ := strings.Cut(t, "-")
		e.log.add("embed " + batch)
		c := e.seen(batch)
		select {
		case <-c:
		default:
			close(c)
		}
	}
	return e.Embedder.Embed(ctx, texts)
}

// gatedStore holds the upserts of batch B0 until the gate opens.
type gatedStore struct {
	retrieval.Store
	gate chan struct{}
}

func (g *gatedStore) Upsert(ctx context.Context, t retrieval.Ticket, c []retrieval.Chunk) error {
	if strings.HasPrefix(t.ID, "B0-") {
		<-g.gate
	}
	return g.Store.Upsert(ctx, t, c)
}

// logState logs each saved watermark.
type logState struct{ log *eventLog }

func (s logState) Load(context.Context, string) (string, error) { return "", nil }
func (s logState) Save(_ context.Context, _, w string) error {
	s.log.add("save " + w)
	return nil
}

// TestWorkerPipelinesShards: a worker prepares its next shard (looks it up,
// chunks and embeds it) while the upserts of the previous one are still being
// written, at most shardDepth shards at a time, and a batch's watermark is
// saved only after its writes returned. Before, each shard's writes were waited
// for before the next shard was read.
func TestWorkerPipelinesShards(t *testing.T) {
	ctx := context.Background()
	var batches [][]Row
	for b := range shardDepth + 2 {
		var rows []Row
		for i := range 4 {
			rows = append(rows, Row{Ticket: retrieval.Ticket{ID: fmt.Sprintf("B%d-%d", b, i), Tenant: "acme", Project: "p",
				Title: fmt.Sprintf("B%d-%d", b, i), Body: "some words", UpdatedAt: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}})
		}
		batches = append(batches, rows)
	}
	log := &eventLog{}
	s := openStore(t, "", newEmbedder())
	defer s.Close()
	gs := &gatedStore{Store: s, gate: make(chan struct{})}
	emb := &batchEmbedder{Embedder: newEmbedder(), log: log, started: map[string]chan struct{}{}}
	ix, err := New(Config{Store: gs, Embedder: emb, State: logState{log}, Workers: 1, EmbedBatch: 2})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		sum Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := ix.Run(ctx, &sliceSource{rows: slices.Concat(batches...), batch: 4})
		done <- result{sum, err}
	}()
	// The last shard the window admits is embedded while B0's upserts are
	// held; on the old code the worker waited for B0 and this never came.
	select {
	case <-emb.seen(fmt.Sprint("B", shardDepth-1)):
	case r := <-done:
		t.Fatalf("run ended while the first batch's upserts were held: %+v %v", r.sum, r.err)
	case <-time.After(30 * time.Second):
		close(gs.gate)
		t.Fatal("the worker did not prepare the next shard while the previous one was being written")
	}
	log.add("release")
	close(gs.gate)
	r := <-done
	if r.err != nil || r.sum.Embedded != 4*len(batches) {
		t.Fatalf("run: %+v %v", r.sum, r.err)
	}
	release := log.index("release")
	if i := log.index("save "); i < release {
		t.Errorf("a watermark was saved while the first batch was unwritten: %v", log.events)
	}
	// Bounded: the shard after the window waited for the first to land.
	if i := log.index(fmt.Sprint("embed B", shardDepth)); i < release {
		t.Errorf("shard %d was prepared while %d were in flight: %v", shardDepth, shardDepth, log.events)
	}
	var saves []string
	for _, e := range log.events {
		if w, ok := strings.CutPrefix(e, "save "); ok {
			saves = append(saves, w)
		}
	}
	if want := []string{"0", "4", "8", "12"}; !slices.Equal(saves, want) {
		t.Errorf("watermarks saved %v, want %v", saves, want)
	}
	want := map[string]retrieval.Ticket{}
	for _, rows := range batches {
		for _, r := range rows {
			want[r.ID] = r.Ticket
		}
	}
	checkStore(t, s, want, Chunker{})
}

// cancellingStore cancels the run's context on its n-th lookup (fault
// injection: an operator's Ctrl-C in the middle of a shard).
type cancellingStore struct {
	retrieval.Store
	mu     sync.Mutex
	n      int
	cancel context.CancelFunc
}

func (c *cancellingStore) Get(ctx context.Context, id string) (retrieval.Ticket, error) {
	t, err := c.Store.Get(ctx, id)
	c.mu.Lock()
	if c.n--; c.n == 0 {
		c.cancel() // after the lookup: the run notices it at the next row
	}
	c.mu.Unlock()
	return t, err
}

// TestCancelledShardKeepsWatermark: a run cancelled in the middle of a shard
// returns the cancellation and saves no watermark for the batch, even with a
// state that ignores the context. Before, the shard's worker reported it done,
// and the committer could save the watermark past rows never written.
func TestCancelledShardKeepsWatermark(t *testing.T) {
	rows := genTickets(5, 10, 30)
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		log := &eventLog{}
		s := openStore(t, "", newEmbedder())
		cs := &cancellingStore{Store: s, n: 1, cancel: cancel}
		ix, err := New(Config{Store: cs, Embedder: newEmbedder(), State: logState{log}, Workers: 1, EmbedBatch: 64})
		if err != nil {
			t.Fatal(err)
		}
		_, err = ix.Run(ctx, &sliceSource{rows: rows, batch: len(rows)})
		cancel()
		s.Close()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run cancelled mid-shard: %v, want context.Canceled", err)
		}
		if i := log.index("save "); i >= 0 {
			t.Fatalf("watermark saved for a batch cut short: %v", log.events)
		}
	}
}
