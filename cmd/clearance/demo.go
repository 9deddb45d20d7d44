package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/fgafile"
	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/testdata"
)

func newDemoCommand() *cobra.Command {
	var (
		addr    string
		dataDir string
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the service on embedded defaults with the demo org and show who sees what",
		Long: `Start clearance with everything in process (embedded OpenFGA on sqlite, the
embedded vector store, the hashing embedder, the dev token issuer), load the demo
org (testdata/org.fga.yaml and testdata/tickets.jsonl, built into the binary), and
print the same search as six principals side by side, with curl commands and
fresh tokens to try more. Keeps serving until Ctrl-C.

Without --data-dir the demo runs in a fresh temporary directory that is removed
when it stops.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if dataDir == "" {
				dir, err := os.MkdirTemp("", "clearance-demo-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				dataDir = dir
			}
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			cfg := demoConfig(addr, dataDir)
			if err := cfg.resolve(); err != nil {
				return err
			}
			return runDemo(ctx, cmd.OutOrStdout(), cfg, log)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&addr, "addr", "127.0.0.1:8080", "listen address (a free port is picked when it is taken)")
	fl.StringVar(&dataDir, "data-dir", "", "data directory (default: a fresh temporary directory)")
	fl.BoolVarP(&verbose, "verbose", "v", false, "log at info level")
	return cmd
}

// demoConfig is serve's configuration with embedded defaults and the dev issuer.
func demoConfig(addr, dataDir string) serveConfig {
	var cfg serveConfig
	cmd := &cobra.Command{}
	cfg.register(cmd) // the flag defaults are the serve defaults
	cfg.Addr = addr
	cfg.DataDir = dataDir
	cfg.Dev = true
	return cfg
}

func runDemo(ctx context.Context, out io.Writer, cfg serveConfig, log *slog.Logger) error {
	start := time.Now()
	a, err := openApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	tuples, err := loadDemoOrg(ctx, a.engine)
	if err != nil {
		return err
	}
	sum, err := a.indexer.Run(ctx, indexer.NewJSONLData("demo-tickets", testdata.Tickets, 256))
	if err != nil {
		return fmt.Errorf("index demo tickets: %w", err)
	}
	if sum.Failed > 0 {
		return fmt.Errorf("index demo tickets: %d rows failed (first: %v)", sum.Failed, sum.Failures)
	}
	fmt.Fprintf(out, "clearance demo: %d tuples, %d tickets (%d chunks) loaded in %s; data dir %s\n",
		tuples, sum.Seen, sum.Chunks, time.Since(start).Round(time.Millisecond), cfg.DataDir)

	ln, err := net.Listen("tcp", cfg.Addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		fmt.Fprintf(out, "%s is in use; picking a free port\n", cfg.Addr)
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		return err
	}
	return a.serve(ctx, ln, func(base string) error {
		return walkthrough(ctx, out, base, cfg.DataDir, a.devToken)
	})
}

// loadDemoOrg writes the demo org's tuples (embedded in the binary) into the
// engine. Writes are idempotent, so a reused --data-dir loads cleanly.
func loadDemoOrg(ctx context.Context, e authz.Engine) (int, error) {
	f, err := fgafile.Parse(testdata.OrgFGA)
	if err != nil {
		return 0, fmt.Errorf("demo org: %w", err)
	}
	if err := f.WriteTuples(ctx, e, 0); err != nil {
		return 0, err
	}
	return len(f.Tuples), nil
}
