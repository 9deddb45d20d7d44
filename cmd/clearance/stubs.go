package main

import "github.com/spf13/cobra"

// Subcommands whose issues have not landed yet. Each moves to its own file when its
// package is wired.

func newBenchCommand() *cobra.Command {
	return notImplemented("bench", "Benchmark retrieval strategies side by side on a synthetic org")
}
