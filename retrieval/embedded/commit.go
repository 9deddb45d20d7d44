package embedded

import (
	"context"
	"fmt"

	"github.com/clearance-dev/clearance/retrieval"
)

// op is one ticket write waiting to be committed.
type op struct {
	kind    byte // opUpsert, opDelete or opMove
	id      string
	project string        // upsert: the ticket's project; move: the new one
	u       *upsertRecord // upsert only
	record  []byte        // the log payload (disk mode)
	done    chan error
}

// commit hands a write to the committer goroutine and waits until it is
// durable and visible (group commit). The committer takes every write that
// queued up meanwhile (typically during the previous fsync), checks them in
// order, appends them to the log with one write and one fsync, applies them
// under one exclusive lock, and reports each result. Concurrent writers thus
// share an fsync while each write stays one record: all-or-nothing on crash,
// and durable before any reader can see it.
func (s *Store) commit(ctx context.Context, o *op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o.done = make(chan error, 1)
	s.sendMu.RLock()
	if s.stopping {
		s.sendMu.RUnlock()
		return errClosed
	}
	s.ops <- o
	s.sendMu.RUnlock()
	return <-o.done
}

// maxBatch bounds how many writes one group commit takes.
const maxBatch = 256

// committer runs from Open until Close closes s.ops.
func (s *Store) committer() {
	defer close(s.committerDone)
	for o := range s.ops {
		batch := []*op{o}
	drain:
		for len(batch) < maxBatch {
			select {
			case o, ok := <-s.ops:
				if !ok {
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		s.writeMu.Lock()
		s.commitBatch(batch)
		s.writeMu.Unlock()
	}
}

// commitBatch runs under writeMu. Only the writer changes the index, so the
// checks may read it without the read lock.
func (s *Store) commitBatch(batch []*op) {
	if s.closed {
		for _, o := range batch {
			o.done <- errClosed
		}
		return
	}
	// What earlier ops of this batch do to a ticket, for the checks of later ones.
	type state struct {
		exists  bool
		project string
	}
	pending := map[string]state{}
	lookup := func(id string) state {
		if st, ok := pending[id]; ok {
			return st
		}
		if tk := s.ix.tickets[id]; tk != nil {
			return state{exists: true, project: tk.Project}
		}
		return state{}
	}
	var live []*op
	var buf []byte
	for _, o := range batch {
		st := lookup(o.id)
		switch o.kind {
		case opDelete:
			if !st.exists { // nothing to do, nothing to log
				o.done <- nil
				continue
			}
			pending[o.id] = state{}
		case opMove:
			if !st.exists {
				o.done <- fmt.Errorf("move %q: %w", o.id, retrieval.ErrNotFound)
				continue
			}
			if st.project == o.project {
				o.done <- nil
				continue
			}
			pending[o.id] = state{exists: true, project: o.project}
		default:
			pending[o.id] = state{exists: true, project: o.project}
		}
		if s.disk != nil {
			buf = frame(buf, o.record)
		}
		live = append(live, o)
	}
	if len(live) == 0 {
		return
	}
	if s.disk != nil {
		if err := s.disk.append(buf); err != nil {
			for _, o := range live {
				o.done <- err
			}
			return
		}
	}
	s.mu.Lock()
	for _, o := range live {
		switch o.kind {
		case opDelete:
			s.ix.remove(o.id)
		case opMove:
			s.ix.move(o.id, o.project)
		default:
			size := int64(0)
			if o.record != nil {
				size = int64(len(o.record) + frameHeader)
			}
			s.ix.upsert(o.u.t, o.u.ords, o.u.texts, o.u.vecs, o.u.docs, size)
		}
	}
	s.mu.Unlock()
	for _, o := range live {
		o.done <- nil
	}
	s.maybeCompact()
}
