package filter

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/oklog/ulid/v2"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
)

// MemoryLog is an in-memory audit.Log for tests and embedding without a data
// dir: it assigns ULID ids like the durable logs and keeps every record. Safe
// for concurrent use.
type MemoryLog struct {
	mu      sync.Mutex
	records []audit.Record
}

var _ audit.Log = (*MemoryLog)(nil)

// Append stores a copy of r after giving r its id.
func (m *MemoryLog) Append(ctx context.Context, r *audit.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r.ID = ulid.Make().String()
	c := *r
	c.Results = slices.Clone(r.Results)
	m.records = append(m.records, c)
	return nil
}

// Records returns the records appended so far, oldest first.
func (m *MemoryLog) Records() []audit.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.records)
}

// Get returns the record with id, or an error wrapping clearance.ErrNotFound
// (the flow check's FlowRecords).
func (m *MemoryLog) Get(_ context.Context, id string) (*audit.Record, error) {
	r, ok := m.Record(id)
	if !ok {
		return nil, fmt.Errorf("audit record %q: %w", id, clearance.ErrNotFound)
	}
	return &r, nil
}

// Record returns the record with id.
func (m *MemoryLog) Record(id string) (audit.Record, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.records {
		if r.ID == id {
			return r, true
		}
	}
	return audit.Record{}, false
}
