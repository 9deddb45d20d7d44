// Command clearance is the one binary of the service: the API server, the indexer,
// the demo, the dev token issuer, audit tools and the benchmark. It maps flags (with
// CLEARANCE_* environment fallbacks) to the plain config structs of each package and
// is the only place that chooses backends.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		var exit exitError
		if errors.As(err, &exit) {
			os.Exit(exit.code)
		}
		fmt.Fprintln(os.Stderr, "clearance:", err)
		os.Exit(1)
	}
}

// exitError ends the process with a specific code after the command printed its own
// report (for example, an index run in which some rows failed).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }
