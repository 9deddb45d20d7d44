package indexer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/client"
)

// PushConfig configures Push.
type PushConfig struct {
	// Server is the base URL of a clearance server ("https://clearance.internal").
	Server string
	// Token is a bearer token or API key with the clearance:index scope.
	Token string
	// Client defaults to an http.Client with a 60 s timeout.
	Client *http.Client
	// MaxRequestBytes caps one POST /v1/tickets body (default just under 1 MiB, the server's default limit); a batch
	// is split into as many requests as needed.
	MaxRequestBytes int
	// State, when set, keeps the push's progress: the source's watermark, saved
	// once the server acknowledged a batch, under a key naming the server and
	// the source (PushStateKey), so a push to another server starts from the
	// beginning and a local index run of the same source is not confused with it.
	State State
	// FromStart ignores the saved progress and sends every row again.
	FromStart   bool
	Logger      *slog.Logger
	Progress    func(Summary)
	MaxFailures int
}

// PushStateKey is the State key of the progress of pushing source to server.
func PushStateKey(server, source string) string {
	return "push " + strings.TrimRight(server, "/") + " " + source
}

// Push checks the credential against the server, then reads src and sends its
// rows as POST /v1/tickets {"tickets":[...]} (deletions as rows with
// "deleted": true). The server writes a request all or nothing, so rows are
// validated here first and a bad row is reported (and left out) instead of
// sinking its whole request. The Summary carries the server's counts.
func Push(ctx context.Context, cfg PushConfig, src Source) (Summary, error) {
	start := time.Now()
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 60 * time.Second}
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 1<<20 - 4<<10 // under the server's default --max-body-bytes (1 MiB)
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = 1000
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base, err := url.Parse(strings.TrimRight(cfg.Server, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") {
		return Summary{}, clearance.Invalid("server", "must be an http(s) URL")
	}
	c, err := client.New(client.Config{Server: base.String(), Credential: cfg.Token, HTTPClient: cfg.Client})
	if err != nil {
		return Summary{}, err
	}
	p := &pusher{cfg: cfg, base: base.String(), c: c, t: &tally{s: Summary{Source: src.Name()}, max: cfg.MaxFailures, log: log}}
	// A key that cannot index fails here, before the source is read or any
	// progress is touched.
	if err := p.preflight(ctx); err != nil {
		return p.t.snapshot(start), err
	}
	key := PushStateKey(p.base, src.Name())
	since := ""
	if cfg.State != nil && !cfg.FromStart {
		if since, err = cfg.State.Load(ctx, key); err != nil {
			return p.t.snapshot(start), err
		}
	}
	for b, err := range src.Read(ctx, since) {
		if err != nil {
			return p.t.snapshot(start), fmt.Errorf("read %s: %w", src.Name(), err)
		}
		if err := p.batch(ctx, b.Rows); err != nil {
			return p.t.snapshot(start), err
		}
		if cfg.State != nil && b.Watermark != "" {
			if err := cfg.State.Save(ctx, key, b.Watermark); err != nil {
				return p.t.snapshot(start), fmt.Errorf("save watermark: %w", err)
			}
		}
		if cfg.Progress != nil {
			cfg.Progress(p.t.snapshot(start))
		}
	}
	sum := p.t.snapshot(start)
	switch {
	case sum.Seen == 0 && since != "":
		sum.Note = "nothing sent: no row of the source changed since the last push to " + p.base
	case sum.Seen == 0:
		sum.Note = "nothing sent: the source has no rows"
	}
	log.Info("push finished", "source", sum.Source, "server", p.base, "seen", sum.Seen, "embedded", sum.Embedded,
		"unchanged", sum.Unchanged, "moved", sum.Moved, "deleted", sum.Deleted, "failed", sum.Failed,
		"chunks", sum.Chunks, "duration", sum.Duration.Round(time.Millisecond))
	return sum, nil
}

type pusher struct {
	cfg  PushConfig
	base string
	c    *client.Client
	t    *tally
}

// maxRowsPerRequest is the server's limit of tickets per POST /v1/tickets.
const maxRowsPerRequest = 1000

// batch sends one source batch in requests of bounded size. Deletions travel
// as rows with "deleted": true, in source order. The server refuses a request
// that names an id twice, so a repeated id starts a new request (which also
// keeps the versions in order).
func (p *pusher) batch(ctx context.Context, rows []SourceRow) error {
	var (
		req  []SourceRow
		ids  = map[string]bool{}
		size int
	)
	send := func() error {
		if len(req) == 0 {
			return nil
		}
		err := p.post(ctx, req)
		req, size = req[:0], 0
		clear(ids)
		return err
	}
	for _, r := range rows {
		p.t.add(func(s *Summary) { s.Seen++ })
		if r.Err == nil {
			r.Err = r.Validate("")
		}
		if r.Err != nil {
			p.t.fail(Failure{Ref: r.Ref, ID: r.ID, Reason: r.Err.Error()})
			continue
		}
		n := len(r.Title) + len(r.Body) + 256
		if ids[r.ID] || len(req) == maxRowsPerRequest || size+n > p.cfg.MaxRequestBytes {
			if err := send(); err != nil {
				return err
			}
		}
		r.ContentHash = "" // the server computes it
		req, ids[r.ID], size = append(req, r), true, size+n
	}
	return send()
}

// preflight checks that the server takes the credential for indexing, with an
// empty POST /v1/tickets: the server checks the credential and then the scope
// before it reads a body, so a key that may index gets 400 ("tickets is
// empty") and writes nothing, a bad one 401 and one without the scope 403.
func (p *pusher) preflight(ctx context.Context) error {
	_, err := p.c.UpsertRaw(ctx, []Row{})
	var apiErr *client.Error
	if err == nil {
		return nil
	}
	if !errors.As(err, &apiErr) {
		return fmt.Errorf("check the credential with %s: %w", p.base, err)
	}
	status, detail := apiErr.Status, problemText(apiErr)
	switch {
	case status == http.StatusBadRequest:
		return nil
	case status == http.StatusUnauthorized:
		return fmt.Errorf("%s did not accept the token or key (401 %s): %w", p.base, detail, clearance.ErrUnauthenticated)
	case status == http.StatusForbidden:
		return fmt.Errorf("the token or key may not index on %s: it needs the clearance:index scope (403 %s): %w", p.base, detail, clearance.ErrForbidden)
	case status == http.StatusNotFound:
		return fmt.Errorf("%s has no POST /v1/tickets (404): is it a clearance server?", p.base)
	}
	return fmt.Errorf("check the credential with %s: %d %s", p.base, status, detail)
}

// problemText is the problem's title and detail, as push reports them.
func problemText(e *client.Error) string {
	return strings.TrimSpace(e.Problem.Title + ": " + e.Problem.Detail)
}

func (p *pusher) post(ctx context.Context, rows []SourceRow) error {
	tickets := make([]Row, len(rows))
	for i, r := range rows {
		tickets[i] = r.Row
	}
	r, err := p.c.UpsertRaw(ctx, tickets)
	var apiErr *client.Error
	switch {
	case err == nil:
		if r.Received != len(rows) {
			// A server that does not count: count what was sent.
			*r = client.UpsertResult{}
			for _, row := range rows {
				if row.Deleted {
					r.Deleted++
				} else {
					r.Indexed++
				}
			}
		}
		p.t.add(func(s *Summary) {
			s.Embedded += r.Indexed
			s.Unchanged += r.Unchanged
			s.Moved += r.Moved
			s.Deleted += r.Deleted
			s.Chunks += r.Chunks
		})
	case errors.As(err, &apiErr) && (apiErr.Status == http.StatusBadRequest || apiErr.Status == http.StatusUnprocessableEntity || apiErr.Status == http.StatusRequestEntityTooLarge):
		// The server refused the request (and wrote none of it) for a reason
		// the local checks do not know (a project of another tenant, an id
		// owned by another tenant): report its rows, go on.
		for _, r := range rows {
			p.t.fail(Failure{Ref: r.Ref, ID: r.ID, Reason: fmt.Sprintf("server refused the request (%d): %s", apiErr.Status, problemText(apiErr))})
		}
	default:
		return err
	}
	return nil
}
