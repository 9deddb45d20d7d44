package main

import (
	"errors"
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/clearance-dev/clearance/client"
)

// grantsClient calls a server's /v1/grants with a user's token, through the
// Go client.
type grantsClient struct {
	server, token string
}

func (c *grantsClient) client() (*client.Client, error) {
	if c.server == "" || c.token == "" {
		return nil, errors.New("--server and --token are required")
	}
	return client.New(client.Config{Server: c.server, Credential: c.token, HTTPClient: &http.Client{Timeout: 30 * time.Second}})
}

// printGrants lists grants; one whose expiry has passed says so (it no longer
// lets the agent read anything, but it is still stored until revoked).
func printGrants(cmd *cobra.Command, gs []client.Grant) error {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "USER\tAGENT\tPROJECT\tEXPIRES")
	now := time.Now()
	for _, g := range gs {
		exp := "never"
		if g.ExpiresAt != nil {
			exp = g.ExpiresAt.Format(time.RFC3339)
			if !g.ExpiresAt.After(now) {
				exp += " (expired)"
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", g.User, g.Agent, g.Project, exp)
	}
	return w.Flush()
}

func newGrantsCommand() *cobra.Command {
	c := &grantsClient{}
	var user string
	cmd := &cobra.Command{
		Use:   "grants",
		Short: "Create, list and revoke agent delegation grants",
		Long: `grants manages a user's consent for agents through a clearance server: the
token is the user's own (an agent's token can never grant). Tenant admins and
operators list and revoke other users' grants in their tenant with --user.`,
	}
	fl := cmd.PersistentFlags()
	fl.StringVar(&c.server, "server", "http://127.0.0.1:8080", "clearance server URL")
	fl.StringVar(&c.token, "token", "", "the user's access token")

	var projects []string
	var expires time.Duration
	create := &cobra.Command{
		Use:   "create AGENT --projects p1,p2 [--expires-in 24h]",
		Short: "Let AGENT read these projects on your behalf",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			req := client.GrantRequest{Agent: args[0], Projects: projects}
			if expires > 0 {
				at := time.Now().Add(expires).UTC().Truncate(time.Second)
				req.ExpiresAt = &at
			}
			gs, err := cl.CreateGrants(cmd.Context(), req)
			if err != nil {
				return err
			}
			return printGrants(cmd, gs)
		},
	}
	create.Flags().StringSliceVar(&projects, "projects", nil, "projects to grant (comma-separated)")
	create.Flags().DurationVar(&expires, "expires-in", 0, "grant lifetime (0: until revoked)")

	list := &cobra.Command{
		Use:   "list [--user U]",
		Short: "List grants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			gs, err := cl.ListGrants(cmd.Context(), user)
			if err != nil {
				return err
			}
			return printGrants(cmd, gs)
		},
	}
	var project string
	revoke := &cobra.Command{
		Use:   "revoke AGENT [--project P] [--user U]",
		Short: "Revoke an agent's grants (effective on its next request)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			revoked, err := cl.RevokeGrants(cmd.Context(), args[0], project, user)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "revoked:")
			return printGrants(cmd, revoked)
		},
	}
	revoke.Flags().StringVar(&project, "project", "", "revoke only this project")
	list.Flags().StringVar(&user, "user", "", "another user of your tenant (tenant admin or operator)")
	revoke.Flags().StringVar(&user, "user", "", "another user of your tenant (tenant admin or operator)")
	cmd.AddCommand(create, list, revoke)
	return cmd
}
