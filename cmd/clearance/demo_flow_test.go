package main

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestDemoFlow runs the demo and checks its flow-check section (SPEC 13): the
// copilot's summary of SEC tickets is denied for acme-docs and allowed for
// acme-secret, and the printed curl and MCP lines, sent as printed, give the
// same denial.
func TestDemoFlow(t *testing.T) {
	out, stop := startDemo(t)
	text := out.String()
	for _, want := range []string{
		"was given SEC-", "into acme-docs    DENIED", "into acme-secret  allowed",
		"of the 3 principals who can view project acme-docs cannot view",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("walkthrough lacks %q:\n%s", want, text)
		}
	}
	token := regexp.MustCompile(`export TOKEN_ANNE_COPILOT=(\S+)`).FindStringSubmatch(text)
	rest := regexp.MustCompile(`curl -s (\S+/v1/flow/check) .*\n.*-d '([^']+)'`).FindStringSubmatch(text)
	mcpLine := regexp.MustCompile(`curl -s (\S+/mcp) .*\n.*\n.*-d '([^']+"check_write"[^']+)'`).FindStringSubmatch(text)
	if token == nil || rest == nil || mcpLine == nil {
		t.Fatalf("no token, flow curl or MCP line in:\n%s", text)
	}
	send := func(url, body string) string {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token[1])
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", url, resp.StatusCode, b)
		}
		return string(b)
	}
	if got := send(rest[1], rest[2]); !strings.Contains(got, `"allowed":false`) {
		t.Errorf("printed curl line: %s, want a denial", got)
	}
	if got := send(mcpLine[1], mcpLine[2]); !strings.Contains(got, "DENIED") || !strings.Contains(got, `"allowed":false`) {
		t.Errorf("printed MCP line: %s, want a denial", got)
	}
	stop()
}
