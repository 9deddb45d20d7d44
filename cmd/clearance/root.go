package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=..."; left
// "dev", versionString reads one from the build info instead.
var version = "dev"

// versionString is clearance's version: the one set at build time, else the
// module version (go install ...@v1.2.3, or the pseudo-version Go stamps from
// the commit of a build in a checkout), else that commit from the VCS settings
// ("+dirty" with local changes), else "dev" (go run, -buildvcs=false).
func versionString() string {
	info, ok := debug.ReadBuildInfo()
	return buildVersion(version, info, ok)
}

func buildVersion(stamped string, info *debug.BuildInfo, ok bool) string {
	if stamped != "dev" && stamped != "" {
		return stamped
	}
	if !ok || info == nil {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "+dirty"
	}
	return "dev-" + rev
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "clearance",
		Short: "Permission-aware retrieval of tickets for AI agents",
		Long: `clearance lets AI agents search a company's tickets and get back only what the
user they act for may see right now. Every flag has a CLEARANCE_* environment
fallback (--data-dir is CLEARANCE_DATA_DIR).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(), // adds --version
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			for _, name := range unknownEnv(cmd.Root(), os.Environ()) {
				// Named, never its value (it may be a secret). A warning, not an
				// error: a deployment may set variables for several commands.
				fmt.Fprintf(cmd.ErrOrStderr(), "clearance: warning: %s is set but no command has a flag it fills (misspelt?)\n", name)
			}
			return applyEnv(cmd)
		},
	}
	root.SetVersionTemplate("clearance {{.Version}}\n")
	root.AddCommand(
		newVersionCommand(),
		newDemoCommand(),
		newServeCommand(),
		newIndexCommand(),
		newTokenCommand(),
		newKeysCommand(),
		newGrantsCommand(),
		newAuditCommand(),
		newReconcileCommand(),
		newRelationshipsCommand(),
		newBenchCommand(),
	)
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of clearance and of its main dependencies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "clearance %s\n", versionString())
			if info, ok := debug.ReadBuildInfo(); ok {
				fmt.Fprintf(out, "go %s\n", info.GoVersion)
				for _, d := range info.Deps {
					switch d.Path {
					case "github.com/openfga/openfga", "github.com/openfga/go-sdk",
						"github.com/pgvector/pgvector-go", "github.com/qdrant/go-client",
						"github.com/modelcontextprotocol/go-sdk":
						fmt.Fprintf(out, "%s %s\n", d.Path, d.Version)
					}
				}
			}
			return nil
		},
	}
}

// flagEnv is the CLEARANCE_* variable of a flag: --openfga-url is
// CLEARANCE_OPENFGA_URL.
func flagEnv(flag string) string {
	return "CLEARANCE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// unknownEnv lists the CLEARANCE_* variables of environ that fill no flag of
// any command under root, sorted: a misspelt variable would otherwise be
// ignored without a word (a Helm values key, a systemd unit).
func unknownEnv(root *cobra.Command, environ []string) []string {
	known := map[string]bool{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) { known[flagEnv(f.Name)] = true })
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) { known[flagEnv(f.Name)] = true })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "CLEARANCE_") && !known[name] && !testOnlyEnv[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// testOnlyEnv are CLEARANCE_* variables that are not flags: the clients' own
// (clients/, their examples) and the test suites'.
var testOnlyEnv = map[string]bool{
	"CLEARANCE_URL": true, "CLEARANCE_TOKEN": true, "CLEARANCE_BIN": true,
	"CLEARANCE_SOAK": true, "CLEARANCE_MULTINODE_LOAD": true, "CLEARANCE_INDEXER_CRASH_CHILD": true,
	"CLEARANCE_BENCH_ROUND": true, "CLEARANCE_BENCH_ROUNDS": true, "CLEARANCE_BENCH_SCALE": true,
	"CLEARANCE_PGVECTOR_BENCH_URL": true,
}

// applyEnv fills every flag that was not set on the command line from its
// CLEARANCE_* environment variable (--openfga-url is CLEARANCE_OPENFGA_URL).
func applyEnv(cmd *cobra.Command) error {
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		name := flagEnv(f.Name)
		if v, ok := os.LookupEnv(name); ok {
			if err := cmd.Flags().Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	return errors.Join(errs...)
}
