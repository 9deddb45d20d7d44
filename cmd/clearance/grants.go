package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// grantsClient calls a server's /v1/grants with a user's token.
type grantsClient struct {
	server, token string
	http          *http.Client
}

func (c *grantsClient) do(cmd *cobra.Command, method, path string, q url.Values, body, out any) error {
	if c.server == "" || c.token == "" {
		return errors.New("--server and --token are required")
	}
	u := strings.TrimRight(c.server, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(cmd.Context(), method, u, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var p struct {
			Title, Detail string
			Errors        []struct{ Field, Reason string }
		}
		_ = json.Unmarshal(b, &p)
		msg := fmt.Sprintf("%s: %s", resp.Status, p.Detail)
		for _, e := range p.Errors {
			msg += fmt.Sprintf("; %s: %s", e.Field, e.Reason)
		}
		return errors.New(msg)
	}
	return json.Unmarshal(b, out)
}

type grantRow struct {
	User      string     `json:"user"`
	Agent     string     `json:"agent"`
	Project   string     `json:"project"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

func printGrants(cmd *cobra.Command, gs []grantRow) error {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "USER\tAGENT\tPROJECT\tEXPIRES")
	for _, g := range gs {
		exp := "never"
		if g.ExpiresAt != nil {
			exp = g.ExpiresAt.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", g.User, g.Agent, g.Project, exp)
	}
	return w.Flush()
}

func newGrantsCommand() *cobra.Command {
	c := &grantsClient{http: &http.Client{Timeout: 30 * time.Second}}
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
			body := map[string]any{"agent": args[0], "projects": projects}
			if expires > 0 {
				body["expires_at"] = time.Now().Add(expires).UTC().Format(time.RFC3339)
			}
			var out struct{ Grants []grantRow }
			if err := c.do(cmd, http.MethodPost, "/v1/grants", nil, body, &out); err != nil {
				return err
			}
			return printGrants(cmd, out.Grants)
		},
	}
	create.Flags().StringSliceVar(&projects, "projects", nil, "projects to grant (comma-separated)")
	create.Flags().DurationVar(&expires, "expires-in", 0, "grant lifetime (0: until revoked)")

	list := &cobra.Command{
		Use:   "list [--user U]",
		Short: "List grants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if user != "" {
				q.Set("user", user)
			}
			var out struct{ Grants []grantRow }
			if err := c.do(cmd, http.MethodGet, "/v1/grants", q, nil, &out); err != nil {
				return err
			}
			return printGrants(cmd, out.Grants)
		},
	}
	var project string
	revoke := &cobra.Command{
		Use:   "revoke AGENT [--project P] [--user U]",
		Short: "Revoke an agent's grants (effective on its next request)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			if user != "" {
				q.Set("user", user)
			}
			if project != "" {
				q.Set("project", project)
			}
			var out struct{ Revoked []grantRow }
			if err := c.do(cmd, http.MethodDelete, "/v1/grants/"+url.PathEscape(args[0]), q, nil, &out); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "revoked:")
			return printGrants(cmd, out.Revoked)
		},
	}
	revoke.Flags().StringVar(&project, "project", "", "revoke only this project")
	list.Flags().StringVar(&user, "user", "", "another user of your tenant (tenant admin or operator)")
	revoke.Flags().StringVar(&user, "user", "", "another user of your tenant (tenant admin or operator)")
	cmd.AddCommand(create, list, revoke)
	return cmd
}
