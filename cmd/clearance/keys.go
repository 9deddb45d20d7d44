package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/clearance-dev/clearance/api/auth"
)

func newKeysCommand() *cobra.Command {
	var dataDir, databaseURL string
	open := func(ctx context.Context) (*auth.Keys, error) {
		return keysFromFlags(ctx, dataDir, databaseURL, slog.New(slog.DiscardHandler))
	}
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create, list and revoke service-account API keys",
		Long: `keys manages the API keys of tenants' service accounts directly in the key
store: the data dir (default) or, with --database-url, PostgreSQL. A running
server sees a revocation on its next request. Over HTTP, tenant admins use
POST/GET/DELETE /v1/tenants/{tenant}/api-keys instead.`,
	}
	fl := cmd.PersistentFlags()
	fl.StringVar(&dataDir, "data-dir", defaultDataDir, "data directory holding api-keys.json")
	fl.StringVar(&databaseURL, "database-url", "", "PostgreSQL URL: the clearance_api_keys table instead of the data dir")

	var tenant, sa, name string
	var scopes []string
	create := &cobra.Command{
		Use:   "create --tenant T --service-account S --scope tickets:read|clearance:index [--name N]",
		Short: "Create a key as an operator; it is printed once and only its salted hash is kept",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer k.Close()
			info, key, err := k.Create(cmd.Context(), tenant, sa, name, scopes, auth.Creator{Kind: auth.CreatorOperator})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "created key %s for service_account:%s of tenant %s (scopes %v); it is shown only now:\n", info.ID, info.ServiceAccount, info.Tenant, info.Scopes)
			_, err = fmt.Fprintln(cmd.OutOrStdout(), key)
			return err
		},
	}
	create.Flags().StringVar(&tenant, "tenant", "", "tenant id")
	create.Flags().StringVar(&sa, "service-account", "", "service account id")
	create.Flags().StringVar(&name, "name", "", "a label for the key")
	// No default scope: an ingest job's key wants clearance:index, a reader's
	// tickets:read, and a default would hand out the one not asked for.
	create.Flags().StringSliceVar(&scopes, "scope", nil, "scopes (required): tickets:read (search and read), clearance:index (push tickets)")
	_ = create.MarkFlagRequired("scope")

	var asJSON bool
	list := &cobra.Command{
		Use:   "list [--tenant T]",
		Short: "List keys (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer k.Close()
			keys, err := k.List(cmd.Context(), tenant)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(keys)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tTENANT\tSERVICE ACCOUNT\tNAME\tSCOPES\tCREATED\tCREATED BY\tLAST USED")
			for _, k := range keys {
				last := "never"
				if k.LastUsedAt != nil {
					last = k.LastUsedAt.Format(time.RFC3339)
				}
				// Keys without a recorded minter are refused by the server.
				by := "unknown (refused: re-create)"
				if k.CreatedBy != nil {
					by = k.CreatedBy.Kind
					if k.CreatedBy.User != "" {
						by += ":" + k.CreatedBy.User
					}
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%v\t%s\t%s\t%s\n", k.ID, k.Tenant, k.ServiceAccount, k.Name, k.Scopes, k.CreatedAt.Format(time.RFC3339), by, last)
			}
			return w.Flush()
		},
	}
	list.Flags().StringVar(&tenant, "tenant", "", "only this tenant's keys")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	revoke := &cobra.Command{
		Use:   "revoke --tenant T ID",
		Short: "Revoke a key (refused on the server's next request)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tenant == "" {
				return errors.New("--tenant is required")
			}
			k, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer k.Close()
			if err := k.Revoke(cmd.Context(), tenant, args[0]); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[0])
			return err
		},
	}
	revoke.Flags().StringVar(&tenant, "tenant", "", "tenant of the key")
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// keysFromFlags opens the API key store: Postgres with a database URL, else the
// data dir.
func keysFromFlags(ctx context.Context, dataDir, databaseURL string, log *slog.Logger) (*auth.Keys, error) {
	if databaseURL != "" {
		b, err := auth.OpenPGKeys(ctx, databaseURL)
		if err != nil {
			return nil, err
		}
		return auth.NewKeys(b, log), nil
	}
	b, err := auth.OpenFileKeys(dataDir)
	if err != nil {
		return nil, err
	}
	return auth.NewKeys(b, log), nil
}
