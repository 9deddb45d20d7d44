package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/pgvector"
)

// bulkLoader is a store whose search index is cheaper to build once after a
// large load than to grow row by row (pgvector's HNSW graph;
// docs/decisions/pgvector-bulk-load.md).
type bulkLoader interface {
	// BeginBulk drops the indexes; searches rank exactly until they are built.
	BeginBulk(ctx context.Context) error
	// EndBulk builds the indexes dropped by BeginBulk (the search index only
	// if searches need it) and reports whether it built the search index.
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
func bulkIndexRun(ctx context.Context, store retrieval.Store, bulk *bool, log *slog.Logger, w io.Writer, tty bool,
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
		built, ierr = withBuildProgress(ctx, store, w, tty, bl.EndBulk)
		if !built && ierr == nil {
			fmt.Fprintf(w, "bulk load ended in %s (lexical index built); search index deferred: no tenant has more chunks than the exact-search threshold, every search is exact\n",
				time.Since(start).Round(100*time.Millisecond))
		}
	} else {
		built, ierr = withBuildProgress(ctx, store, w, tty, bl.BuildIndex)
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

// buildReporter is a store that can say how far its running index build has
// got (pgvector: an HNSW build over a million chunks takes many minutes, the
// lexical indexes of as many chunks about twenty seconds).
type buildReporter interface {
	BuildProgress(ctx context.Context) (pgvector.BuildProgress, bool, error)
}

// withBuildProgress runs build and, while it runs, shows the store's build
// progress on w: a bar on a terminal, a line every 30 s otherwise. A failing
// progress query ends the display only; the build goes on.
func withBuildProgress(ctx context.Context, store any, w io.Writer, tty bool, build func(context.Context) (bool, error)) (bool, error) {
	br, ok := store.(buildReporter)
	if !ok {
		return build(ctx)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var (
			bar     *progressbar.ProgressBar
			barFor  string // the index the bar shows
			lastOut = time.Now()
		)
		finish := func() {
			if bar != nil {
				_ = bar.Finish()
				bar = nil
			}
		}
		defer finish()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		start := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			p, running, err := br.BuildProgress(ctx)
			if err != nil {
				return
			}
			if !running || p.BlocksTotal <= 0 {
				continue
			}
			what := buildDescription(p.Index)
			if !tty {
				if time.Since(lastOut) >= 30*time.Second {
					lastOut = time.Now()
					fmt.Fprintf(w, "%s: %s, %d/%d blocks, %d rows, %s\n", what, p.Phase,
						p.BlocksDone, p.BlocksTotal, p.TuplesDone, time.Since(start).Round(time.Second))
				}
				continue
			}
			if bar == nil || barFor != p.Index {
				finish()
				barFor = p.Index
				bar = progressbar.NewOptions64(p.BlocksTotal, progressbar.OptionSetWriter(w),
					progressbar.OptionSetDescription(what), progressbar.OptionShowCount(),
					progressbar.OptionSetItsString("blocks"), progressbar.OptionShowIts(),
					progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
				// The bar's clock starts at its first render: counted from here,
				// the first count is not divided by no time at all.
				_ = bar.RenderBlank()
				continue
			}
			_ = bar.Set64(p.BlocksDone)
		}
	}()
	built, err := build(ctx)
	close(stop)
	<-done
	return built, err
}

// buildDescription names an index build for the progress display.
func buildDescription(index string) string {
	if index == "lexical" {
		return "building lexical index"
	}
	return "building search index"
}
