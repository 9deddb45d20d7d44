package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/pgvector"
)

// bulkLoader is a store whose search index is cheaper to build once after a
// large load than to grow row by row (pgvector's HNSW graph;
// docs/decisions/pgvector-bulk-load.md).
type bulkLoader interface {
	// BeginBulk drops the index; searches rank exactly until it is built.
	BeginBulk(ctx context.Context) error
	// EndBulk builds the index dropped by BeginBulk, if searches need it.
	EndBulk(ctx context.Context) (bool, error)
	// BuildIndex builds a missing or invalid index (a load or build that died),
	// if searches need it.
	BuildIndex(ctx context.Context) (bool, error)
}

// bulkIndexRun wraps one local index run. With bulk nil (no --bulk flag) the
// run is a bulk load when the store is empty: nobody searches it yet, so
// dropping the index costs no one anything. Without a bulk load, a missing or
// invalid index (a crashed earlier load) is built after the run, when it would
// otherwise be grown row by row during it.
func bulkIndexRun(ctx context.Context, store retrieval.Store, bulk *bool, log *slog.Logger, w io.Writer,
	run func(context.Context) (indexer.Summary, error)) (indexer.Summary, error) {
	bl, ok := store.(bulkLoader)
	if !ok {
		return run(ctx)
	}
	useBulk := false
	if bulk != nil {
		useBulk = *bulk
	} else if st, err := store.Stats(ctx); err != nil {
		return indexer.Summary{}, err
	} else {
		useBulk = st.Chunks == 0
	}
	if useBulk {
		if err := bl.BeginBulk(ctx); err != nil {
			return indexer.Summary{}, err
		}
		fmt.Fprintln(w, "bulk load: search index dropped, built after the run (searches are exact meanwhile)")
	}
	sum, err := run(ctx)
	start := time.Now()
	var (
		built bool
		ierr  error
	)
	if useBulk {
		// Built also after a failed run: what was written is searchable. A
		// cancelled context fails the build; the next run builds it.
		built, ierr = bl.EndBulk(ctx)
		if !built && ierr == nil {
			fmt.Fprintln(w, "search index deferred: no tenant has more chunks than the exact-search threshold, every search is exact")
		}
	} else {
		built, ierr = bl.BuildIndex(ctx)
	}
	if errors.Is(ierr, pgvector.ErrBulkBusy) {
		log.Warn("search index not built here: another process is loading or building it")
		return sum, err
	}
	if !built && ierr == nil {
		return sum, err
	}
	if ierr != nil {
		log.Error("search index not built: searches stay exact until the next index run builds it", "err", ierr)
		return sum, errors.Join(err, fmt.Errorf("build search index: %w", ierr))
	}
	fmt.Fprintf(w, "search index built in %s\n", time.Since(start).Round(100*time.Millisecond))
	return sum, err
}
