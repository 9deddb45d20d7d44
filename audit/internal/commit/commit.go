// Package commit is the group commit shared by the audit backends: Append enqueues
// a record and waits; one writer at a time takes everything that queued up while
// the previous write was in flight and makes it durable with one write (one fsync,
// or one transaction). Under load, batches grow by themselves, so throughput rises
// with concurrency while a lone Append still costs one fsync.
package commit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/clearance-dev/clearance/audit"
)

// Flush makes recs durable in order, sealing each (which fills ID, PrevHash and
// Hash). On error none of them may count as written.
type Flush func(recs []*audit.Pending) error

// Config of a Committer.
type Config struct {
	Flush Flush
	// MaxBatch caps the records of one flush (default 512).
	MaxBatch int
	// FailOpen makes Append succeed (logging the loss) when the store fails. Off by
	// default: then the caller fails closed.
	FailOpen bool
	Logger   *slog.Logger
	// Observe, when set, is told about every flush (metrics).
	Observe audit.FlushObserver
}

type request struct {
	rec *audit.Pending
	res chan error
}

// Committer batches Appends. The first caller to find no write in flight becomes
// the leader and writes the queue itself (no hand-off to another goroutine, so a
// lone Append costs one write and one fsync, not also two wake-ups); callers that
// arrive meanwhile queue up and are written together by the next leader.
type Committer struct {
	cfg Config

	mu       sync.Mutex
	idle     *sync.Cond // signalled when flushing turns false
	queue    []*request
	flushing bool
	closed   bool
}

// New returns a committer.
func New(cfg Config) *Committer {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 512
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Committer{cfg: cfg}
	c.idle = sync.NewCond(&c.mu)
	return c
}

// Append queues a copy of r and waits until it is durable. Then r gets its ID,
// PrevHash and Hash. r must be prepared (audit.Options.Prepare).
func (c *Committer) Append(ctx context.Context, r *audit.Record) error {
	// Encoding happens here, in parallel across callers, not under the lock.
	p, err := audit.NewPending(r)
	if err != nil {
		return err
	}
	req := &request{rec: p, res: make(chan error, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("%w: closed", audit.ErrUnavailable)
	}
	c.queue = append(c.queue, req)
	if !c.flushing {
		c.flushing = true
		c.lead() // unlocks
	} else {
		c.mu.Unlock()
	}
	select {
	case err := <-req.res:
		if err != nil {
			if c.cfg.FailOpen {
				c.cfg.Logger.Error("audit record lost (fail-open is on)", "kind", r.Kind, "tenant", r.Tenant, "err", err)
				return nil
			}
			return err
		}
		r.ID, r.PrevHash, r.Hash = p.Record.ID, p.Record.PrevHash, p.Record.Hash
		return nil
	case <-ctx.Done():
		// The record may still be written; a record too many is harmless, and the
		// caller fails this request.
		return fmt.Errorf("audit append: %w", ctx.Err())
	}
}

// lead writes one batch from the queue. Called with mu held and flushing set; it
// returns with mu released. If more records queued during the write, a new
// goroutine leads the next batch so this caller returns at once.
func (c *Committer) lead() {
	n := min(len(c.queue), c.cfg.MaxBatch)
	batch := c.queue[:n:n]
	c.queue = append([]*request(nil), c.queue[n:]...)
	c.mu.Unlock()

	recs := make([]*audit.Pending, len(batch))
	for i, r := range batch {
		recs[i] = r.rec
	}
	start := time.Now()
	err := c.cfg.Flush(recs)
	if c.cfg.Observe != nil {
		c.cfg.Observe(len(recs), time.Since(start), err)
	}
	for _, r := range batch {
		r.res <- err
	}

	c.mu.Lock()
	if len(c.queue) == 0 {
		c.flushing = false
		c.idle.Broadcast()
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	go func() {
		c.mu.Lock()
		c.lead()
	}()
}

// Close stops accepting records and waits until everything queued is written.
func (c *Committer) Close() {
	c.mu.Lock()
	c.closed = true
	for c.flushing {
		c.idle.Wait()
	}
	c.mu.Unlock()
}

// Retain prunes records older than keep at once and then every interval, until
// stop is closed. Both backends run it when retention is configured.
func Retain(stop <-chan struct{}, interval, keep time.Duration, now func() time.Time,
	prune func(context.Context, time.Time) (*audit.Checkpoint, error), log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := prune(context.Background(), now().Add(-keep)); err != nil {
			log.Error("audit: retention", "err", err)
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}
