package indexer

import (
	"context"
	"iter"
)

// Source yields the rows of a ticket system in batches.
type Source interface {
	// Name identifies the source in the sync state ("jsonl:/data/tickets",
	// "postgres:tickets"); two runs of the same source share a watermark.
	Name() string
	// Read yields batches of rows changed after the watermark since ("" reads
	// everything, which a full sync does). Each batch carries the watermark to
	// save once its rows are durably written. A row that could not be read is
	// yielded with Err set and does not stop the read; an error of the source
	// itself (I/O, database) ends the sequence.
	Read(ctx context.Context, since string) iter.Seq2[Batch, error]
}

// Batch is a run of rows and the watermark that follows them.
type Batch struct {
	Rows      []SourceRow
	Watermark string
}

// SourceRow is one row as read, with where it came from for error reports.
type SourceRow struct {
	Row
	// Ref locates the row: "tickets.jsonl:12" or "id=T-1042".
	Ref string
	// Err says why the row could not be decoded (a *clearance.FieldError).
	Err error
}
