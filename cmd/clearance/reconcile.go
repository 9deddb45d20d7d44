package main

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/clearance-dev/clearance/indexer"
)

// exitDrift is the exit status of reconcile when drift remains.
const exitDrift = 3

func newReconcileCommand() *cobra.Command {
	var (
		be      backendFlags
		fix     bool
		asJSON  bool
		words   int
		overlap int
	)
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Compare the index with the engine's ticket and project tuples",
		Long: `Compare every indexed ticket's tenant and project with the engine's
ticket#project tuple and that project's project#tenant tuple, and report drift.
With --fix, rewrite the index from the engine: a ticket in another project of
the same tenant is moved, one in another tenant is re-embedded there. Drift that
the engine cannot resolve (no tuple, several projects, a project without a
tenant) is reported only.

Exit status: 0 without drift, 3 when drift remains, 1 on errors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelError}))
			emb, store, err := be.open(ctx, log)
			if err != nil {
				return err
			}
			defer store.Close()
			engine, err := be.cfg.openEngine(ctx, log)
			if err != nil {
				return err
			}
			defer engine.Close()
			rep, err := indexer.Reconcile(ctx, indexer.ReconcileConfig{
				Store: store, Engine: engine, Fix: fix, Embedder: emb,
				Chunker: indexer.Chunker{Words: words, Overlap: overlap}, Logger: log,
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				for _, d := range rep.Drift {
					fmt.Fprintln(out, d)
				}
				fmt.Fprintf(out, "%d tickets checked, %d drifted, %d fixed\n", rep.Tickets, len(rep.Drift), rep.Fixed)
			}
			if len(rep.Drift) > rep.Fixed {
				return exitError{code: exitDrift}
			}
			return nil
		},
	}
	be.register(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&fix, "fix", false, "rewrite the index metadata from the engine")
	fl.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fl.IntVar(&words, "chunk-words", indexer.DefaultChunkWords, "words per chunk (for re-embedded tickets; match the index run)")
	fl.IntVar(&overlap, "chunk-overlap", indexer.DefaultChunkOverlap, "words shared by consecutive chunks")
	return cmd
}
