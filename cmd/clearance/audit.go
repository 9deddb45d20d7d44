package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/audit/filelog"
	"github.com/clearance-dev/clearance/audit/pglog"
)

// auditConfig is the audit part of serve's configuration.
type auditConfig struct {
	DataDir     string
	DatabaseURL string
	HashQueries bool
	FailOpen    bool
	Retention   time.Duration
	// Observe is told about every group commit (metrics); optional.
	Observe audit.FlushObserver
}

// auditStore is an open audit log: append, read, verify, close.
type auditStore interface {
	audit.Log
	audit.Reader
	Close() error
}

// openAuditLog picks the audit backend: the PostgreSQL table with a database URL,
// otherwise segment files in <data-dir>/audit. The checkpoint signing key always
// lives in <data-dir>/audit.
func openAuditLog(ctx context.Context, c auditConfig, log *slog.Logger) (auditStore, error) {
	if c.Retention < 0 {
		return nil, fmt.Errorf("--audit-retention %s: must not be negative", c.Retention)
	}
	dir := filepath.Join(c.DataDir, "audit")
	log = log.With("component", "audit")
	if c.DatabaseURL != "" {
		return pglog.Open(ctx, pglog.Config{URL: c.DatabaseURL, KeyPath: filepath.Join(dir, "checkpoint.key"),
			Retention: c.Retention, HashQueries: c.HashQueries, FailOpen: c.FailOpen, Logger: log, Observe: c.Observe})
	}
	return filelog.Open(ctx, filelog.Config{Dir: dir, Retention: c.Retention, HashQueries: c.HashQueries, FailOpen: c.FailOpen, Logger: log, Observe: c.Observe})
}

// auditSource is where `clearance audit` reads: a data dir, a database or a server.
type auditSource struct {
	DataDir     string
	DatabaseURL string
	Server      string
	Token       string
}

func (s *auditSource) register(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&s.DataDir, "data-dir", "clearance-data", "data directory whose audit/ log to read (read-only; a running server may keep writing)")
	fl.StringVar(&s.DatabaseURL, "database-url", "", "read the audit table in this PostgreSQL database instead of the data dir")
	fl.StringVar(&s.Server, "server", "", "read through a clearance server's API instead (tail and show), e.g. http://127.0.0.1:8080")
	fl.StringVar(&s.Token, "token", "", "access token for --server (scope clearance:audit, or a tenant admin's)")
}

// auditReader is what the subcommands need of a source.
type auditReader interface {
	List(ctx context.Context, f audit.Filter) (audit.Page, error)
	Get(ctx context.Context, id string) (*audit.Record, error)
}

// open returns the local log (for verify too) or a server client.
func (s *auditSource) open(ctx context.Context) (auditReader, *localAudit, error) {
	if s.Server != "" {
		if s.DatabaseURL != "" {
			return nil, nil, errors.New("--server and --database-url exclude each other")
		}
		u, err := url.Parse(s.Server)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, nil, fmt.Errorf("--server %q: want an http(s) URL", s.Server)
		}
		if s.Token == "" {
			return nil, nil, errors.New("--server needs --token")
		}
		return &auditClient{base: strings.TrimSuffix(s.Server, "/"), token: s.Token, http: &http.Client{Timeout: 30 * time.Second}}, nil, nil
	}
	var l localAudit
	if s.DatabaseURL != "" {
		st, err := openAuditLog(ctx, auditConfig{DataDir: s.DataDir, DatabaseURL: s.DatabaseURL}, slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, nil, err
		}
		l.Reader, l.close = st, st.Close
	} else {
		fl, err := filelog.Open(ctx, filelog.Config{Dir: filepath.Join(s.DataDir, "audit"), ReadOnly: true})
		if err != nil {
			return nil, nil, fmt.Errorf("%w (is --data-dir right?)", err)
		}
		l.Reader, l.close = fl, fl.Close
	}
	return l.Reader, &l, nil
}

type localAudit struct {
	audit.Reader
	close func() error
}

func newAuditCommand() *cobra.Command {
	var src auditSource
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Tail, show and verify the audit log",
		Long: `Read the audit log: every search, ticket fetch and MCP call with what was
returned, what was withheld and why. The log is read from --data-dir (default), a
PostgreSQL database (--database-url) or a server (--server with --token; tail and
show only). verify walks the hash chain and exits with status 1 at the first
edited, removed or reordered record.`,
		Example: `  clearance audit tail -f
  clearance audit tail --tenant acme --principal anne -n 50
  clearance audit show 01JD3Y6N2V4T9QK5M8W7X1ZB3C
  clearance audit verify --database-url postgres://clearance@db/clearance
  clearance audit tail --server https://clearance.example --token "$TOKEN"`,
	}
	src.register(cmd)
	cmd.AddCommand(newAuditTailCommand(&src), newAuditShowCommand(&src), newAuditVerifyCommand(&src))
	return cmd
}

func newAuditTailCommand(src *auditSource) *cobra.Command {
	var (
		f        audit.Filter
		since    string
		n        int
		follow   bool
		interval time.Duration
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print the latest records, oldest first; -f keeps following",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since != "" {
				d, err := time.ParseDuration(since)
				if err != nil {
					t, terr := time.Parse(time.RFC3339, since)
					if terr != nil {
						return fmt.Errorf("--since %q: want a duration (1h) or an RFC 3339 time", since)
					}
					f.Since = t
				} else {
					f.Since = time.Now().Add(-d)
				}
			}
			if n < 1 || n > audit.MaxListLimit {
				return fmt.Errorf("-n %d: want 1..%d", n, audit.MaxListLimit)
			}
			r, l, err := src.open(cmd.Context())
			if err != nil {
				return err
			}
			if l != nil {
				defer l.close()
			}
			out := cmd.OutOrStdout()
			f.Limit = n
			page, err := r.List(cmd.Context(), f)
			if err != nil {
				return err
			}
			recs := page.Records
			slices.Reverse(recs)
			for i := range recs {
				printRecord(out, &recs[i], asJSON)
			}
			if !follow {
				return nil
			}
			after := "00000000000000000000000000"
			if len(recs) > 0 {
				after = recs[len(recs)-1].ID
			}
			f.Since, f.Limit = time.Time{}, audit.MaxListLimit
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-tick.C:
				}
				f.After = after
				page, err := r.List(cmd.Context(), f)
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil
					}
					return err
				}
				for i := range page.Records {
					printRecord(out, &page.Records[i], asJSON)
				}
				if page.Next != "" {
					after = page.Next
				}
			}
		},
	}
	fl := cmd.Flags()
	fl.IntVarP(&n, "lines", "n", 20, "how many of the latest records to print first")
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing new records as they are appended (polls)")
	fl.DurationVar(&interval, "interval", time.Second, "poll interval with -f")
	fl.BoolVar(&asJSON, "json", false, "print each record as one line of JSON")
	fl.StringVar(&f.Tenant, "tenant", "", "only this tenant")
	fl.StringVar(&f.Principal, "principal", "", "only this user or service account")
	fl.StringVar(&f.Agent, "agent", "", "only this agent")
	fl.StringVar(&f.Ticket, "ticket", "", "only records in which this ticket was a candidate")
	fl.StringVar(&since, "since", "", "only records since this duration ago (1h) or RFC 3339 time")
	return cmd
}

// printRecord prints one summary line (or the JSON record).
func printRecord(w io.Writer, r *audit.Record, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(r)
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	var returned, withheld int
	for _, c := range r.Results {
		switch c.Decision {
		case audit.Returned:
			returned++
		case audit.FlowSource, audit.FlowDestination:
		default:
			withheld++
		}
	}
	who := r.Principal.User
	if r.Principal.ServiceAccount != "" {
		who = "sa:" + r.Principal.ServiceAccount
	}
	if r.Principal.Agent != "" {
		who += " via " + r.Principal.Agent
	}
	q := strconv.Quote(r.Query)
	if r.Query == "" && r.QueryHash != "" {
		q = "sha256:" + r.QueryHash[:min(12, len(r.QueryHash))]
	}
	if f := r.Flow; f != nil {
		// A flow check: where to, and how many of its readers were excluded.
		q = fmt.Sprintf("to=%s sources=%d audience=%d excluded=%d", f.Destination, f.SourceTickets, f.Audience, f.Excluded)
	}
	fmt.Fprintf(w, "%s %s %-10s %-10s %-24s %-9s returned=%d withheld=%d %s\n",
		r.ID, r.Time.UTC().Format(time.RFC3339), r.Kind, r.Tenant, who, r.Status, returned, withheld, q)
}

func newAuditShowCommand(src *auditSource) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Print one record as JSON: principal, plan, every candidate and its decision",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, l, err := src.open(cmd.Context())
			if err != nil {
				return err
			}
			if l != nil {
				defer l.close()
			}
			rec, err := r.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(rec, "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
			return nil
		},
	}
}

func newAuditVerifyCommand(src *auditSource) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Walk the hash chain; exit 1 at the first edited, removed or reordered record",
		Long: `Walk the hash chain from the first record (or the signed retention checkpoint)
to the head. Prints the number of records and the head hash: note the head hash
somewhere else (a ticket, a chat) to be able to prove later that nothing was cut
from the end. A torn last line left by a crash is reported but is not a break; the
server cuts it off when it next opens the log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if src.Server != "" {
				return errors.New("verify reads the log itself: use --data-dir or --database-url, not --server")
			}
			_, l, err := src.open(cmd.Context())
			if err != nil {
				return err
			}
			defer l.close()
			rep, err := l.Verify(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				b, _ := json.MarshalIndent(rep, "", "  ")
				fmt.Fprintf(out, "%s\n", b)
			} else {
				printReport(out, rep)
			}
			if !rep.OK() {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func printReport(w io.Writer, rep audit.VerifyReport) {
	if cp := rep.Checkpoint; cp != nil {
		fmt.Fprintf(w, "checkpoint: %d records pruned up to %s (%s), signed by key %s\n",
			cp.Records, cp.ID, cp.Time.Format(time.RFC3339), audit.KeyFingerprint(cp.PublicKey))
	}
	fmt.Fprintf(w, "records:    %d", rep.Records)
	if rep.Records > 0 {
		fmt.Fprintf(w, " (%s .. %s)", rep.FirstID, rep.LastID)
	}
	fmt.Fprintf(w, "\nhead hash:  %s\n", rep.HeadHash)
	if t := rep.TornTail; t != nil {
		fmt.Fprintf(w, "torn tail:  %d bytes at offset %d of %s (an unacknowledged write cut by a crash; cut off on next open)\n", t.Bytes, t.Offset, t.Segment)
	}
	if rep.Problem != nil {
		fmt.Fprintf(w, "BROKEN:     %s\n", rep.Problem)
		return
	}
	fmt.Fprintln(w, "chain:      intact")
}

// auditClient reads records through a server's API.
type auditClient struct {
	base  string
	token string
	http  *http.Client
}

func (c *auditClient) get(ctx context.Context, path string, q url.Values, v any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var p struct {
			Title  string `json:"title"`
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(body, &p)
		return fmt.Errorf("%s: %s %s", resp.Status, p.Title, p.Detail)
	}
	return json.Unmarshal(body, v)
}

func (c *auditClient) List(ctx context.Context, f audit.Filter) (audit.Page, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("tenant", f.Tenant)
	set("principal", f.Principal)
	set("agent", f.Agent)
	set("ticket", f.Ticket)
	set("cursor", f.Cursor)
	set("after", f.After)
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.UTC().Format(time.RFC3339Nano))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var p audit.Page
	err := c.get(ctx, "/v1/audit", q, &p)
	return p, err
}

func (c *auditClient) Get(ctx context.Context, id string) (*audit.Record, error) {
	var r audit.Record
	if err := c.get(ctx, "/v1/audit/"+url.PathEscape(id), nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
