package main

import "github.com/spf13/cobra"

// Subcommands whose issues have not landed yet. Each moves to its own file when its
// package is wired.

func newTokenCommand() *cobra.Command {
	return notImplemented("token", "Print an access token from the dev issuer in a data dir")
}

func newKeysCommand() *cobra.Command {
	return notImplemented("keys", "Create, list and revoke service-account API keys")
}

func newGrantsCommand() *cobra.Command {
	return notImplemented("grants", "List and revoke agent delegation grants")
}

func newBenchCommand() *cobra.Command {
	return notImplemented("bench", "Benchmark retrieval strategies side by side on a synthetic org")
}
