// Package commit is the group commit shared by the audit backends: Append enqueues
// a record and waits; one writer goroutine takes everything that queued up while
// the previous write was in flight and makes it durable with one write (one fsync,
// or one transaction). Under load, batches grow by themselves, so throughput rises
// with concurrency while a lone Append still costs one fsync.
package commit

import (
	"context"
	"errors"
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
}

type request struct {
	rec *audit.Pending
	res chan error
}

// Committer batches Appends.
type Committer struct {
	cfg    Config
	mu     sync.RWMutex // guards closed against concurrent sends on queue
	closed bool
	queue  chan *request
	done   chan struct{}
}

// New starts the writer goroutine.
func New(cfg Config) *Committer {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 512
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Committer{cfg: cfg, queue: make(chan *request, 4*cfg.MaxBatch), done: make(chan struct{})}
	go c.run()
	return c
}

// Append queues a copy of r and waits until it is durable. Then r gets its ID,
// PrevHash and Hash. r must be prepared (audit.Options.Prepare) and must not be
// changed until Append returns.
func (c *Committer) Append(ctx context.Context, r *audit.Record) error {
	// Encoding happens here, in parallel across callers, not in the writer.
	p, err := audit.NewPending(r)
	if err != nil {
		return err
	}
	req := &request{rec: p, res: make(chan error, 1)}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return fmt.Errorf("%w: closed", audit.ErrUnavailable)
	}
	select {
	case c.queue <- req:
	case <-ctx.Done():
		c.mu.RUnlock()
		return fmt.Errorf("audit append: %w", ctx.Err())
	}
	c.mu.RUnlock()
	select {
	case err := <-req.res:
		if err != nil {
			if c.cfg.FailOpen && !errors.Is(err, context.Canceled) {
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

func (c *Committer) run() {
	defer close(c.done)
	batch := make([]*request, 0, c.cfg.MaxBatch)
	recs := make([]*audit.Pending, 0, c.cfg.MaxBatch)
	for req := range c.queue {
		batch = append(batch[:0], req)
	drain:
		for len(batch) < c.cfg.MaxBatch {
			select {
			case r, ok := <-c.queue:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		recs = recs[:0]
		for _, r := range batch {
			recs = append(recs, r.rec)
		}
		err := c.cfg.Flush(recs)
		for _, r := range batch {
			r.res <- err
		}
	}
}

// Close stops accepting records, writes what is queued and stops the writer.
func (c *Committer) Close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.queue)
	}
	c.mu.Unlock()
	<-c.done
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
