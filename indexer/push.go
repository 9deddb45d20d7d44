package indexer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/clearance-dev/clearance"
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
	p := &pusher{cfg: cfg, base: base.String(), t: &tally{s: Summary{Source: src.Name()}, max: cfg.MaxFailures, log: log}}
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
	status, detail, err := p.do(ctx, http.MethodPost, p.base+"/v1/tickets", []byte(`{"tickets":[]}`))
	if err != nil {
		return fmt.Errorf("check the credential with %s: %w", p.base, err)
	}
	switch {
	case status == http.StatusBadRequest || status/100 == 2:
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

// pushResponse is the server's account of one POST /v1/tickets.
type pushResponse struct {
	Received  int `json:"received"`
	Indexed   int `json:"indexed"`
	Unchanged int `json:"unchanged"`
	Moved     int `json:"moved"`
	Deleted   int `json:"deleted"`
	Chunks    int `json:"chunks"`
}

func (p *pusher) post(ctx context.Context, rows []SourceRow) error {
	tickets := make([]Row, len(rows))
	for i, r := range rows {
		tickets[i] = r.Row
	}
	body, err := json.Marshal(map[string]any{"tickets": tickets})
	if err != nil {
		return err
	}
	status, resp, err := p.do(ctx, http.MethodPost, p.base+"/v1/tickets", body)
	if err != nil {
		return err
	}
	switch {
	case status/100 == 2:
		var r pushResponse
		if json.Unmarshal([]byte(resp), &r) != nil || r.Received != len(rows) {
			// A server that does not count: count what was sent.
			r = pushResponse{}
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
	case status == http.StatusBadRequest || status == http.StatusUnprocessableEntity || status == http.StatusRequestEntityTooLarge:
		// The server refused the request (and wrote none of it) for a reason
		// the local checks do not know (a project of another tenant, an id
		// owned by another tenant): report its rows, go on.
		for _, r := range rows {
			p.t.fail(Failure{Ref: r.Ref, ID: r.ID, Reason: fmt.Sprintf("server refused the request (%d): %s", status, resp)})
		}
	default:
		return fmt.Errorf("POST /v1/tickets: %d %s", status, resp)
	}
	return nil
}

// do sends a request, retrying transient failures (network errors, 429, 502,
// 503, 504) with backoff. It returns the status and the response body, or for
// errors the problem's title and detail.
func (p *pusher) do(ctx context.Context, method, u string, body []byte) (int, string, error) {
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("Authorization", "Bearer "+p.cfg.Token)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		status, detail, err := p.roundTrip(req)
		transient := err != nil || status == http.StatusTooManyRequests || status == http.StatusBadGateway ||
			status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
		if !transient || attempt == 4 || ctx.Err() != nil {
			if err != nil {
				return 0, "", fmt.Errorf("%s %s: %w: %w", method, u, clearance.ErrUnavailable, err)
			}
			return status, detail, nil
		}
		select {
		case <-time.After(backoff):
			backoff *= 2
		case <-ctx.Done():
			return 0, "", ctx.Err()
		}
	}
}

func (p *pusher) roundTrip(req *http.Request) (int, string, error) {
	resp, err := p.cfg.Client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, "", err
	}
	if resp.StatusCode/100 == 2 {
		return resp.StatusCode, string(b), nil
	}
	var problem struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	detail := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &problem) == nil && (problem.Detail != "" || problem.Title != "") {
		detail = strings.TrimSpace(problem.Title + ": " + problem.Detail)
	}
	return resp.StatusCode, detail, nil
}
