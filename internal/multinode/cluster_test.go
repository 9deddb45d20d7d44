package multinode

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/clearance-dev/clearance/authz"
)

// buildClearance builds the clearance binary of this tree once for the test.
func buildClearance(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not on PATH (the test builds the clearance binary): %v", err)
	}
	out := filepath.Join(t.TempDir(), "clearance")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", out, "github.com/clearance-dev/clearance/cmd/clearance")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build clearance: %v\n%s", err, b)
	}
	return out
}

// replica is one `clearance serve` process.
type replica struct {
	name    string
	url     string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}

	mu       sync.Mutex
	killedAt time.Time
}

// startReplica starts `clearance serve` with args; its log (JSON lines) goes to a
// file in dir. The process is killed when the test ends.
func startReplica(t *testing.T, bin, name, addr, dir string, args []string) *replica {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"serve", "--addr", addr, "--log-format", "json"}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	r := &replica{name: name, url: "http://" + addr, logPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(r.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-r.exited
		}
	})
	return r
}

// cleanEnv is the environment without CLEARANCE_* variables, so only the flags
// the test passes configure the replicas.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLEARANCE_") {
			env = append(env, kv)
		}
	}
	return env
}

// waitReady polls /readyz until it answers 200.
func (r *replica) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(r.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-r.exited:
			t.Fatalf("%s exited at start:\n%s", r.name, r.logTail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s:\n%s", r.name, timeout, r.logTail())
		}
	}
}

// kill sends SIGKILL (kill -9) and waits for the process to go.
func (r *replica) kill() {
	r.mu.Lock()
	r.killedAt = time.Now()
	r.mu.Unlock()
	_ = r.cmd.Process.Kill()
	<-r.exited
}

func (r *replica) killTime() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.killedAt
}

func (r *replica) logTail() string {
	b, _ := os.ReadFile(r.logPath)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// logLine is the part of a replica's JSON log line the test reads.
type logLine struct {
	Time  time.Time `json:"time"`
	Level string    `json:"level"`
	Msg   string    `json:"msg"`
	// Source is the index run's source ("api" for POST /v1/tickets batches).
	Source string `json:"source"`
}

func (r *replica) logLines(t *testing.T) []logLine {
	t.Helper()
	f, err := os.Open(r.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg != "" {
			out = append(out, l)
		}
	}
	return out
}

// fga is the application's client of the OpenFGA cluster: it writes tuples
// straight through OpenFGA's HTTP API, like the ticket system clearance serves
// would, to whichever server answers.
type fga struct {
	servers []string
	store   string
	model   string
	http    *http.Client

	mu   sync.Mutex
	down map[string]bool // servers that refused a connection (killed)
}

func (f *fga) post(ctx context.Context, base, path string, body any, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.http.Do(req)
	if err != nil {
		return &retryable{err}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests ||
		resp.StatusCode == http.StatusConflict:
		// 409: a concurrent transaction wrote the same tuples; once it ends, the
		// same write (duplicates ignored) goes through. A write retried after its
		// server was killed meets its own first attempt this way when that one's
		// transaction was still open.
		return &retryable{fmt.Errorf("%s%s: %d %s", base, path, resp.StatusCode, raw)}
	case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated:
		return fmt.Errorf("%s%s: %d %s", base, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// retryable is a failure another server, or a later attempt, may not have: a
// refused or cut connection, a 5xx, a 429 or a 409 (write conflict).
type retryable struct{ err error }

func (e *retryable) Error() string { return e.err.Error() }
func (e *retryable) Unwrap() error { return e.err }

// do sends the request to the first server that answers, trying each in turn
// for up to 30 s.
func (f *fga) do(ctx context.Context, path string, body, out any) error {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		for _, s := range f.servers {
			f.mu.Lock()
			down := f.down[s]
			f.mu.Unlock()
			if down && attempt == 0 {
				continue
			}
			err := f.post(ctx, s, path, body, out)
			var re *retryable
			if !errors.As(err, &re) {
				return err
			}
			last = err
			if errors.Is(err, syscall.ECONNREFUSED) {
				f.mu.Lock()
				f.down[s] = true
				f.mu.Unlock()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no openfga server answered: %w", last)
}

type tupleKey struct {
	User     string `json:"user"`
	Relation string `json:"relation"`
	Object   string `json:"object"`
}

func (k tupleKey) String() string { return k.Object + "#" + k.Relation + "@" + k.User }

// write writes and deletes tuples. Writing an existing tuple and deleting a
// missing one are no-ops, so a request retried on another server after a cut
// connection (which may have been applied) is safe.
func (f *fga) write(ctx context.Context, writes, deletes []tupleKey) error {
	body := map[string]any{"authorization_model_id": f.model}
	if len(writes) > 0 {
		body["writes"] = map[string]any{"tuple_keys": writes, "on_duplicate": "ignore"}
	}
	if len(deletes) > 0 {
		body["deletes"] = map[string]any{"tuple_keys": deletes, "on_missing": "ignore"}
	}
	return f.do(ctx, "/stores/"+f.store+"/write", body, nil)
}

// setup creates a store and writes clearance's model into it, as an operator
// does before pointing clearance at a store it shares with an application.
func (f *fga) setup(ctx context.Context) error {
	var store struct {
		ID string `json:"id"`
	}
	if err := f.do(ctx, "/stores", map[string]string{"name": "multinode"}, &store); err != nil {
		return fmt.Errorf("create store: %w", err)
	}
	f.store = store.ID
	m, err := authz.ParseModel(authz.ModelDSL)
	if err != nil {
		return err
	}
	m.Id = ""
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	var model struct {
		ID string `json:"authorization_model_id"`
	}
	if err := f.do(ctx, "/stores/"+f.store+"/authorization-models", json.RawMessage(raw), &model); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	f.model = model.ID
	return nil
}
