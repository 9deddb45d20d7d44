package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clearance-dev/clearance/api/auth"
)

// defaultDevAudience is the resource URL of `serve --dev` on its default address.
const defaultDevAudience = "http://127.0.0.1:8080"

func newTokenCommand() *cobra.Command {
	var (
		dataDir, sub, tenant, act, audience string
		scopes, projects                    []string
		ttl                                 time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Print an access token from the dev issuer in a data dir",
		Long: `token mints an at+jwt access token signed with the dev issuer's key in
--data-dir (created on first use). Only a server started with --dev on the same
data dir trusts it; its audience defaults to that server's URL, which serve --dev
records in the data dir (dev-server.json). With --act the token is an agent's acting for --sub (RFC 8693
act.sub); --projects narrows it (RFC 9396 authorization_details ticket_access).

  clearance token --sub anne --tenant acme --act copilot --scope tickets:read`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if sub == "" || tenant == "" {
				return errors.New("--sub and --tenant are required")
			}
			dk, err := auth.LoadOrCreateDevKey(dataDir)
			if err != nil {
				return err
			}
			if audience == "" {
				d, ok, err := readDevServer(dataDir)
				if err != nil {
					return err
				}
				audience = defaultDevAudience
				if ok {
					audience = d.Audience
				}
			}
			var sc []string
			for _, s := range scopes {
				sc = append(sc, strings.Fields(s)...)
			}
			tok, err := dk.Mint(auth.TokenRequest{
				Subject: sub, Tenant: tenant, Actor: act, Scopes: sc, Projects: projects,
				Audience: strings.TrimRight(audience, "/"), TTL: ttl,
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dataDir, "data-dir", defaultDataDir, "data directory holding the dev issuer's key (dev-issuer.jwk)")
	fl.StringVar(&sub, "sub", "", "user id (token sub)")
	fl.StringVar(&tenant, "tenant", "", "tenant id (tenant claim)")
	fl.StringVar(&act, "act", "", "agent id acting for the user (act.sub)")
	fl.StringSliceVar(&scopes, "scope", []string{"tickets:read"}, "scopes (repeat or space-separate): tickets:read, clearance:index, clearance:admin, clearance:audit")
	fl.StringSliceVar(&projects, "projects", nil, "narrow the token to these projects (comma-separated)")
	fl.DurationVar(&ttl, "ttl", time.Hour, "lifetime of the token")
	fl.StringVar(&audience, "audience", "", "aud: the server's --public-url (default: the URL the last serve --dev on --data-dir recorded, else "+defaultDevAudience+")")
	return cmd
}
