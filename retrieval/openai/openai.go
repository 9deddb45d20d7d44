// Package openai is a retrieval.Embedder for any OpenAI-compatible /v1/embeddings
// endpoint: OpenAI, Ollama, Text Embeddings Inference, vLLM, LocalAI.
//
// Texts are sent in batches, several batches at a time; a batch that fails with
// 429, 408, a 5xx status, a timeout or a network error is retried with exponential
// backoff and jitter, honouring Retry-After. Every returned vector is checked
// against the configured dimension and normalised to unit length, and vectors are
// placed by the response's index field, not by position.
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/retrieval"
)

// Config configures the client. BaseURL, Model and Dim are required.
type Config struct {
	// BaseURL is the API root including the version, e.g. https://api.openai.com/v1
	// or http://localhost:11434/v1; the client posts to BaseURL + "/embeddings".
	BaseURL string
	// Model is the embedding model name sent to the server.
	Model string
	// APIKey is sent as a bearer token when set.
	APIKey string
	// Dim is the vector length every response must have.
	Dim int
	// SendDimensions adds "dimensions": Dim to requests, for models that can
	// shorten their output (OpenAI text-embedding-3-*). Others may reject it.
	SendDimensions bool
	// BatchSize is the number of texts per request (default 64).
	BatchSize int
	// MaxConcurrency is the number of requests in flight at once (default 4).
	MaxConcurrency int
	// Timeout bounds one HTTP request, including reading the body (default 60s).
	Timeout time.Duration
	// MaxRetries is how often one batch is retried after a retryable failure
	// (default 5; negative means none).
	MaxRetries int
	// MinBackoff and MaxBackoff bound the wait between retries (defaults 250ms
	// and 20s); a Retry-After header is honoured up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// HTTPClient sends the requests (default: a client with no overall timeout;
	// Timeout applies per request).
	HTTPClient *http.Client
	// Logger receives retry warnings (never texts or keys). Default: discard.
	Logger *slog.Logger
}

// Client is an OpenAI-compatible embedder. It is safe for concurrent use.
type Client struct {
	cfg Config
	url string
	hc  *http.Client
	log *slog.Logger
}

var _ retrieval.Embedder = (*Client)(nil)

// New checks cfg and returns a client. It does not contact the server.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		return nil, clearance.Invalid("base_url", "must not be empty")
	}
	if !strings.HasPrefix(cfg.BaseURL, "http://") && !strings.HasPrefix(cfg.BaseURL, "https://") {
		return nil, clearance.Invalid("base_url", "must start with http:// or https://, got %q", cfg.BaseURL)
	}
	if cfg.Model == "" {
		return nil, clearance.Invalid("model", "must not be empty")
	}
	if cfg.Dim <= 0 {
		return nil, clearance.Invalid("dim", "must be positive (the model's output dimension), got %d", cfg.Dim)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 64
	}
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 5
	}
	cfg.MaxRetries = max(cfg.MaxRetries, 0)
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 20 * time.Second
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, url: strings.TrimRight(cfg.BaseURL, "/") + "/embeddings", hc: hc, log: log}, nil
}

// Dim is the configured vector dimension.
func (c *Client) Dim() int { return c.cfg.Dim }

// Model is "openai:<model>", the embedding space recorded with the index.
func (c *Client) Model() string { return "openai:" + c.cfg.Model }

// Embed returns one unit vector per text, in order. It fails as a whole if any
// batch fails after its retries; errors wrap retrieval.ErrUnavailable (or the
// context's error).
func (c *Client) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	if len(texts) == 0 {
		return out, nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, c.cfg.MaxConcurrency)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	for start := 0; start < len(texts); start += c.cfg.BatchSize {
		end := min(start+c.cfg.BatchSize, len(texts))
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := c.batch(ctx, texts[start:end], out[start:end]); err != nil {
				once.Do(func() { firstErr = err })
				cancel(err)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

type request struct {
	Model          string   `json:"model"`
	Input          []string `json:"input"`
	EncodingFormat string   `json:"encoding_format"`
	Dimensions     int      `json:"dimensions,omitempty"`
}

type response struct {
	Data []struct {
		Index     int       `json:"index"`
		Embedding []float64 `json:"embedding"`
	} `json:"data"`
}

// attemptError is one failed request; retry says whether another may succeed.
type attemptError struct {
	err        error
	retry      bool
	retryAfter time.Duration
}

// batch embeds texts into out with retries.
func (c *Client) batch(ctx context.Context, texts []string, out [][]float32) error {
	in := make([]string, len(texts))
	for i, t := range texts {
		if t == "" {
			t = " " // the OpenAI API rejects empty strings
		}
		in[i] = t
	}
	req := request{Model: c.cfg.Model, Input: in, EncodingFormat: "float"}
	if c.cfg.SendDimensions {
		req.Dimensions = c.cfg.Dim
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		ae := c.attempt(ctx, body, out)
		if ae == nil {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if !ae.retry || attempt >= c.cfg.MaxRetries {
			return fmt.Errorf("openai: embeddings (%d texts, %d attempts): %w: %w", len(texts), attempt+1, retrieval.ErrUnavailable, ae.err)
		}
		wait := c.backoff(attempt, ae.retryAfter)
		c.log.WarnContext(ctx, "embedding request failed, retrying", "attempt", attempt+1, "wait", wait, "err", ae.err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

// backoff is exponential with jitter in [d/2, d], or the server's Retry-After
// when it asks for longer, both capped at MaxBackoff.
func (c *Client) backoff(attempt int, retryAfter time.Duration) time.Duration {
	d := c.cfg.MinBackoff << min(attempt, 20)
	d = min(d, c.cfg.MaxBackoff)
	d = d/2 + rand.N(d/2+1)
	return min(max(d, retryAfter), c.cfg.MaxBackoff)
}

func (c *Client) attempt(ctx context.Context, body []byte, out [][]float32) *attemptError {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return &attemptError{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	if c.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// Network errors and our per-request timeout are worth another try.
		return &attemptError{err: err, retry: true}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return &attemptError{err: fmt.Errorf("read response: %w", err), retry: true}
	}
	if resp.StatusCode != http.StatusOK {
		ae := &attemptError{err: fmt.Errorf("status %d: %s", resp.StatusCode, errorMessage(data))}
		switch {
		case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout,
			resp.StatusCode >= 500:
			ae.retry = true
			ae.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
		}
		return ae
	}
	var r response
	if err := json.Unmarshal(data, &r); err != nil {
		return &attemptError{err: fmt.Errorf("decode response: %w", err)}
	}
	if err := c.fill(r, out); err != nil {
		return &attemptError{err: err}
	}
	return nil
}

// fill places the response's vectors by index, checked and normalised.
func (c *Client) fill(r response, out [][]float32) error {
	if len(r.Data) != len(out) {
		return fmt.Errorf("response has %d embeddings for %d inputs", len(r.Data), len(out))
	}
	got := make([][]float32, len(out))
	for _, d := range r.Data {
		if d.Index < 0 || d.Index >= len(out) || got[d.Index] != nil {
			return fmt.Errorf("response has a missing, repeated or out-of-range index %d", d.Index)
		}
		if len(d.Embedding) != c.cfg.Dim {
			return fmt.Errorf("model %q returned %d dimensions, configured dim is %d", c.cfg.Model, len(d.Embedding), c.cfg.Dim)
		}
		var n float64
		for _, x := range d.Embedding {
			n += x * x
		}
		if n == 0 || math.IsNaN(n) || math.IsInf(n, 0) {
			return fmt.Errorf("embedding %d is zero or not finite", d.Index)
		}
		inv := 1 / math.Sqrt(n)
		v := make([]float32, len(d.Embedding))
		for i, x := range d.Embedding {
			v[i] = float32(x * inv)
		}
		got[d.Index] = v
	}
	copy(out, got)
	return nil
}

// errorMessage extracts {"error":{"message":...}} or a short prefix of the body.
func errorMessage(body []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or invalid.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
