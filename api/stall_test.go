package api

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/authz"
)

// TestStalledBody: clients that send headers and part of a body, then stall
// until the server's read deadline, are answered 408 problem+json and logged
// below error level: a stall is the client's doing, not an internal error
// (issue 14, defect 7). It used to be 500 with one ERROR line per client.
func TestStalledBody(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	area := &failArea{}
	s := New(Config{ReadTimeout: 300 * time.Millisecond, Logger: log}, Deps{
		Auth:  staticAuth{"t": {Kind: authz.KindUser, Tenant: "acme", User: "anne", Scopes: []string{ScopeTicketsRead}}},
		Areas: []Area{area},
	})
	(&MCP{}).Mount(s) // the MCP body is read by clearance before the SDK sees it
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	const clients = 8
	statuses := make(chan string, clients)
	var wg sync.WaitGroup
	for i := range clients {
		path := "/v1/echo"
		if i%2 == 1 {
			path = MCPPath
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				statuses <- err.Error()
				return
			}
			defer conn.Close()
			// Headers and 10 of the 100 promised bytes, then nothing.
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":\"a", path)
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				statuses <- err.Error()
				return
			}
			defer resp.Body.Close()
			statuses <- fmt.Sprintf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}()
	}
	wg.Wait()
	close(statuses)
	for st := range statuses {
		if !strings.HasSuffix(st, ": 408 application/problem+json") {
			t.Errorf("stalled client got %q, want 408 problem+json", st)
		}
	}
	// A client that hangs up mid-body (half-close) gets 400, also not an error.
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":\"a")
	_ = conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("half-closed client got %d, want 400", resp.StatusCode)
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if strings.Contains(out, `"level":"ERROR"`) {
		t.Errorf("a stalled client was logged as an error:\n%s", out)
	}
	if !strings.Contains(out, `"status":408`) {
		t.Errorf("no access log line with 408:\n%s", out)
	}
}
