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
	"github.com/clearance-dev/clearance/retrieval"
)

// PushConfig configures Push.
type PushConfig struct {
	// Server is the base URL of a clearance server ("https://clearance.internal").
	Server string
	// Token is a bearer token or API key with the clearance:index scope.
	Token string
	// Client defaults to an http.Client with a 60 s timeout.
	Client *http.Client
	// MaxRequestBytes caps one POST /v1/tickets body (default 4 MiB); a batch
	// is split into as many requests as needed.
	MaxRequestBytes int
	// State, when set, keeps the source's watermark (saved once the server
	// acknowledged a batch).
	State       State
	Logger      *slog.Logger
	Progress    func(Summary)
	MaxFailures int
}

// Push reads src and sends its rows to a server: upserts as POST /v1/tickets
// {"tickets":[...]}, deletions as DELETE /v1/tickets/{id}. The server writes a
// request all or nothing, so rows are validated here first and a bad row is
// reported (and left out) instead of sinking its whole request.
func Push(ctx context.Context, cfg PushConfig, src Source) (Summary, error) {
	start := time.Now()
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 60 * time.Second}
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = 4 << 20
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
	since := ""
	if cfg.State != nil {
		if since, err = cfg.State.Load(ctx, src.Name()); err != nil {
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
			if err := cfg.State.Save(ctx, src.Name(), b.Watermark); err != nil {
				return p.t.snapshot(start), fmt.Errorf("save watermark: %w", err)
			}
		}
		if cfg.Progress != nil {
			cfg.Progress(p.t.snapshot(start))
		}
	}
	sum := p.t.snapshot(start)
	log.Info("push finished", "source", sum.Source, "server", p.base, "seen", sum.Seen, "sent", sum.Embedded,
		"deleted", sum.Deleted, "failed", sum.Failed, "duration", sum.Duration.Round(time.Millisecond))
	return sum, nil
}

type pusher struct {
	cfg  PushConfig
	base string
	t    *tally
}

// batch sends one source batch: valid upserts in requests of bounded size, then
// deletions (in source order relative to each other; an id both upserted and
// deleted in one batch ends deleted only if the deletion came last).
func (p *pusher) batch(ctx context.Context, rows []SourceRow) error {
	var (
		req     []retrieval.Ticket
		reqRefs []SourceRow
		size    int
	)
	send := func() error {
		if len(req) == 0 {
			return nil
		}
		err := p.post(ctx, req, reqRefs)
		req, reqRefs, size = req[:0], reqRefs[:0], 0
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
		if r.Deleted {
			// Keep order with earlier upserts of the same id.
			if err := send(); err != nil {
				return err
			}
			if err := p.delete(ctx, r); err != nil {
				return err
			}
			continue
		}
		n := len(r.Title) + len(r.Body) + 256
		if size+n > p.cfg.MaxRequestBytes {
			if err := send(); err != nil {
				return err
			}
		}
		tk := r.Ticket
		tk.ContentHash = ""
		req, reqRefs, size = append(req, tk), append(reqRefs, r), size+n
	}
	return send()
}

func (p *pusher) post(ctx context.Context, tickets []retrieval.Ticket, rows []SourceRow) error {
	body, err := json.Marshal(map[string]any{"tickets": tickets})
	if err != nil {
		return err
	}
	status, detail, err := p.do(ctx, http.MethodPost, p.base+"/v1/tickets", body)
	if err != nil {
		return err
	}
	switch {
	case status/100 == 2:
		p.t.add(func(s *Summary) { s.Embedded += len(tickets) })
	case status == http.StatusBadRequest || status == http.StatusUnprocessableEntity || status == http.StatusRequestEntityTooLarge:
		// The server refused the request (and wrote none of it) for a reason
		// the local checks do not know: report its rows, go on.
		for _, r := range rows {
			p.t.fail(Failure{Ref: r.Ref, ID: r.ID, Reason: fmt.Sprintf("server refused the batch (%d): %s", status, detail)})
		}
	default:
		return fmt.Errorf("POST /v1/tickets: %d %s", status, detail)
	}
	return nil
}

func (p *pusher) delete(ctx context.Context, r SourceRow) error {
	status, detail, err := p.do(ctx, http.MethodDelete, p.base+"/v1/tickets/"+url.PathEscape(r.ID), nil)
	if err != nil {
		return err
	}
	switch {
	case status/100 == 2:
		p.t.add(func(s *Summary) { s.Deleted++ })
	case status == http.StatusNotFound:
		p.t.add(func(s *Summary) { s.Unchanged++ })
	default:
		return fmt.Errorf("DELETE /v1/tickets/%s: %d %s", r.ID, status, detail)
	}
	return nil
}

// do sends a request, retrying transient failures (network errors, 429, 502,
// 503, 504) with backoff. It returns the status and, for errors, the problem
// detail.
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
		return resp.StatusCode, "", nil
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
