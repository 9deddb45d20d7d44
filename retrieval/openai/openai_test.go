package openai_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/openai"
)

// server is a real HTTP server speaking the /v1/embeddings protocol. Its vectors
// are deterministic functions of the text, deliberately not unit length, and its
// data arrays come back shuffled so clients must order by index. fault, when set,
// decides what the n-th request (from 1) gets instead of a good answer.
type server struct {
	*httptest.Server
	dim      int
	key      string
	requests atomic.Int64
	inFlight atomic.Int64
	maxIn    atomic.Int64

	mu       sync.Mutex
	batches  []int
	arrivals []time.Time
	fault    func(n int64, w http.ResponseWriter) bool
}

func newServer(t *testing.T, dim int) *server {
	s := &server{dim: dim, key: "sk-test"}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.Close)
	return s
}

// vector is what the server returns for text: length 3, not 1.
func vector(text string, dim int) []float64 {
	h := fnv.New64a()
	h.Write([]byte(text))
	rng := rand.New(rand.NewPCG(h.Sum64(), 7))
	v := make([]float64, dim)
	var n float64
	for i := range v {
		v[i] = rng.NormFloat64()
		n += v[i] * v[i]
	}
	for i := range v {
		v[i] *= 3 / math.Sqrt(n)
	}
	return v
}

func (s *server) handle(w http.ResponseWriter, r *http.Request) {
	n := s.requests.Add(1)
	in := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxIn.Load()
		if in <= m || s.maxIn.CompareAndSwap(m, in) {
			break
		}
	}
	s.mu.Lock()
	s.arrivals = append(s.arrivals, time.Now())
	fault := s.fault
	s.mu.Unlock()
	if r.URL.Path != "/v1/embeddings" || r.Method != http.MethodPost {
		http.Error(w, `{"error":{"message":"not found"}}`, http.StatusNotFound)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.key {
		http.Error(w, `{"error":{"message":"bad api key"}}`, http.StatusUnauthorized)
		return
	}
	if fault != nil && fault(n, w) {
		return
	}
	var req struct {
		Model string   `json:"model"`
		Input []string `json:"input"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model != "test-embed" {
		http.Error(w, `{"error":{"message":"bad request"}}`, http.StatusBadRequest)
		return
	}
	for _, in := range req.Input {
		if in == "" {
			http.Error(w, `{"error":{"message":"empty input"}}`, http.StatusBadRequest)
			return
		}
	}
	s.mu.Lock()
	s.batches = append(s.batches, len(req.Input))
	s.mu.Unlock()
	type item struct {
		Object    string    `json:"object"`
		Index     int       `json:"index"`
		Embedding []float64 `json:"embedding"`
	}
	data := make([]item, len(req.Input))
	for i, text := range req.Input {
		data[i] = item{"embedding", i, vector(text, s.dim)}
	}
	rand.Shuffle(len(data), func(i, j int) { data[i], data[j] = data[j], data[i] })
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"object": "list", "model": req.Model, "data": data})
}

func (s *server) setFault(f func(n int64, w http.ResponseWriter) bool) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

func (s *server) client(t *testing.T, mod func(*openai.Config)) *openai.Client {
	cfg := openai.Config{
		BaseURL: s.URL + "/v1/", Model: "test-embed", APIKey: s.key, Dim: s.dim,
		BatchSize: 7, MaxConcurrency: 3, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := openai.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func texts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("ticket %d: checkout fails with error %d", i, i*7)
	}
	out[3] = "" // servers reject empty strings; the client must still embed it
	return out
}

func checkVectors(t *testing.T, in []string, got [][]float32, dim int) {
	t.Helper()
	if len(got) != len(in) {
		t.Fatalf("%d vectors for %d texts", len(got), len(in))
	}
	for i, text := range in {
		if text == "" {
			text = " "
		}
		want := vector(text, dim)
		if len(got[i]) != dim {
			t.Fatalf("text %d: %d dims", i, len(got[i]))
		}
		for j := range want {
			if math.Abs(float64(got[i][j])-want[j]/3) > 1e-6 {
				t.Fatalf("text %d dim %d: %v, want %v (the server's vector, unit length, in input order)", i, j, got[i][j], want[j]/3)
			}
		}
	}
}

func TestEmbedBatchesConcurrencyOrderAndNormalisation(t *testing.T) {
	s := newServer(t, 16)
	c := s.client(t, nil)
	if c.Model() != "openai:test-embed" || c.Dim() != 16 {
		t.Fatalf("Model %q Dim %d", c.Model(), c.Dim())
	}
	// Slow answers so batches overlap and the concurrency cap is exercised.
	s.setFault(func(int64, http.ResponseWriter) bool { time.Sleep(20 * time.Millisecond); return false })
	in := texts(100)
	got, err := c.Embed(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	checkVectors(t, in, got, 16)
	if n := s.requests.Load(); n != 15 {
		t.Fatalf("%d requests for 100 texts in batches of 7, want 15", n)
	}
	for _, b := range s.batches {
		if b > 7 {
			t.Fatalf("batch of %d texts, limit 7", b)
		}
	}
	if m := s.maxIn.Load(); m > 3 || m < 2 {
		t.Fatalf("%d requests in flight at most, want 2..3 (MaxConcurrency 3)", m)
	}
	if got, err := c.Embed(context.Background(), nil); err != nil || len(got) != 0 {
		t.Fatalf("Embed(nil) = %v, %v", got, err)
	}
}

func TestRetriesOn429And5xxHonouringRetryAfter(t *testing.T) {
	s := newServer(t, 8)
	c := s.client(t, func(cfg *openai.Config) { cfg.BatchSize = 100; cfg.MaxBackoff = 5 * time.Second })
	s.setFault(func(n int64, w http.ResponseWriter) bool {
		switch n {
		case 1:
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":{"message":"rate limited"}}`, http.StatusTooManyRequests)
		case 2:
			http.Error(w, "upstream exploded", http.StatusBadGateway)
		case 3:
			http.Error(w, "", http.StatusServiceUnavailable)
		default:
			return false
		}
		return true
	})
	in := texts(10)
	got, err := c.Embed(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	checkVectors(t, in, got, 8)
	if n := s.requests.Load(); n != 4 {
		t.Fatalf("%d requests, want 4 (three failures, one success)", n)
	}
	// The second request waited at least the second the server asked for (a lower
	// bound, so it cannot flake on a slow machine).
	if gap := s.arrivals[1].Sub(s.arrivals[0]); gap < 900*time.Millisecond {
		t.Fatalf("retried after %v, Retry-After asked for 1s", gap)
	}
}

func TestGivesUpAfterMaxRetries(t *testing.T) {
	s := newServer(t, 8)
	c := s.client(t, func(cfg *openai.Config) { cfg.MaxRetries = 3 })
	s.setFault(func(_ int64, w http.ResponseWriter) bool {
		http.Error(w, "down", http.StatusInternalServerError)
		return true
	})
	_, err := c.Embed(context.Background(), []string{"a"})
	if !errors.Is(err, retrieval.ErrUnavailable) || !strings.Contains(err.Error(), "500") {
		t.Fatalf("err = %v, want ErrUnavailable mentioning status 500", err)
	}
	if n := s.requests.Load(); n != 4 {
		t.Fatalf("%d requests, want 1 + 3 retries", n)
	}
}

func TestClientErrorsAreNotRetried(t *testing.T) {
	s := newServer(t, 8)
	c := s.client(t, func(cfg *openai.Config) { cfg.APIKey = "wrong" })
	_, err := c.Embed(context.Background(), []string{"a", "b"})
	if !errors.Is(err, retrieval.ErrUnavailable) || !strings.Contains(err.Error(), "bad api key") {
		t.Fatalf("err = %v, want ErrUnavailable with the server's message", err)
	}
	if n := s.requests.Load(); n != 1 {
		t.Fatalf("%d requests for a 401, want 1", n)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("error leaks the API key: %v", err)
	}
}

func TestWrongDimensionIsAnError(t *testing.T) {
	s := newServer(t, 12)
	c := s.client(t, func(cfg *openai.Config) { cfg.Dim = 16 })
	_, err := c.Embed(context.Background(), texts(20))
	if err == nil || !strings.Contains(err.Error(), "12 dimensions") || !strings.Contains(err.Error(), "16") {
		t.Fatalf("err = %v, want a dimension mismatch naming 12 and 16", err)
	}
	if n := s.requests.Load(); n > 3 {
		t.Fatalf("%d requests: a wrong dimension must not be retried", n)
	}
}

func TestBrokenResponsesAreErrors(t *testing.T) {
	for name, body := range map[string]string{
		"too few":        `{"data":[{"index":0,"embedding":[1,0,0,0]}]}`,
		"repeated index": `{"data":[{"index":0,"embedding":[1,0,0,0]},{"index":0,"embedding":[0,1,0,0]}]}`,
		"out of range":   `{"data":[{"index":0,"embedding":[1,0,0,0]},{"index":2,"embedding":[0,1,0,0]}]}`,
		"zero vector":    `{"data":[{"index":0,"embedding":[1,0,0,0]},{"index":1,"embedding":[0,0,0,0]}]}`,
		"not json":       `<html>gateway</html>`,
	} {
		t.Run(name, func(t *testing.T) {
			s := newServer(t, 4)
			c := s.client(t, nil)
			s.setFault(func(_ int64, w http.ResponseWriter) bool {
				w.Write([]byte(body))
				return true
			})
			if _, err := c.Embed(context.Background(), []string{"a", "b"}); !errors.Is(err, retrieval.ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
		})
	}
}

func TestSlowServerTimesOutAndRetries(t *testing.T) {
	s := newServer(t, 8)
	c := s.client(t, func(cfg *openai.Config) { cfg.Timeout = 50 * time.Millisecond })
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	s.setFault(func(n int64, w http.ResponseWriter) bool {
		if n == 1 {
			<-release // hangs until the test ends; the client must time out
			return true
		}
		return false
	})
	in := texts(5)
	got, err := c.Embed(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	checkVectors(t, in, got, 8)
	if n := s.requests.Load(); n != 2 {
		t.Fatalf("%d requests, want the timed-out one and a retry", n)
	}
}

func TestContextCancellationStopsRetrying(t *testing.T) {
	s := newServer(t, 8)
	c := s.client(t, func(cfg *openai.Config) { cfg.MinBackoff = time.Hour; cfg.MaxBackoff = time.Hour })
	s.setFault(func(_ int64, w http.ResponseWriter) bool {
		http.Error(w, "busy", http.StatusTooManyRequests)
		return true
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Embed(ctx, []string{"a"})
		done <- err
	}()
	for s.requests.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		field string
		cfg   openai.Config
	}{
		{"base_url", openai.Config{Model: "m", Dim: 3}},
		{"base_url", openai.Config{BaseURL: "localhost:11434", Model: "m", Dim: 3}},
		{"model", openai.Config{BaseURL: "http://x/v1", Dim: 3}},
		{"dim", openai.Config{BaseURL: "http://x/v1", Model: "m"}},
	} {
		_, err := openai.New(tc.cfg)
		var fe *clearance.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Fatalf("New(%+v) = %v, want a FieldError on %s", tc.cfg, err, tc.field)
		}
	}
}

// BenchmarkEmbed measures the client's own overhead (JSON both ways, checks,
// normalisation) against a local server, per text.
func BenchmarkEmbed(b *testing.B) {
	s := &server{dim: 384, key: "sk-test"}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	defer s.Close()
	c, err := openai.New(openai.Config{BaseURL: s.URL + "/v1", Model: "test-embed", APIKey: s.key, Dim: 384})
	if err != nil {
		b.Fatal(err)
	}
	in := make([]string, 256)
	for i := range in {
		in[i] = fmt.Sprintf("ticket %d body text", i)
	}
	for b.Loop() {
		if _, err := c.Embed(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(in)), "ns/text")
}
