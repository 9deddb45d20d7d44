// Package indexer keeps a retrieval.Store in step with a source of tickets.
//
// A Source (a JSONL file or directory, a PostgreSQL table or query) yields batches
// of changed rows after a watermark. The Indexer validates each row, skips tickets
// whose content hash is unchanged, chunks and embeds the rest with bounded
// concurrency, writes them to the store, applies deletes and project moves, and
// saves the batch's watermark only after the store write returned, so a crash
// re-does work but never loses or duplicates it. Push sends the same rows to a
// server's POST /v1/tickets instead. Scheduler runs an index job on an interval or
// cron schedule, skipping overlapping runs and, with a shared backend, holding a
// PostgreSQL advisory lock so only one replica indexes. Reconcile compares the
// index's tenant and project metadata with the engine's tuples.
package indexer
