package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/client"
)

// scrape reads /metrics and flattens it to "name{l1="v1",...}" -> value, labels
// in name order; histograms contribute name_count and name_sum.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := func(suffix string) string {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, l.GetName()+"="+`"`+l.GetValue()+`"`)
				}
				return name + suffix + "{" + strings.Join(ls, ",") + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key("")] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key("")] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key("_count")] = float64(m.GetHistogram().GetSampleCount())
				out[key("_sum")] = m.GetHistogram().GetSampleSum()
			case dto.MetricType_UNTYPED:
				out[key("")] = m.GetUntyped().GetValue()
			}
		}
	}
	return out
}

// documentedMetrics reads the metric names of docs/operations.md's reference
// table, expanding "clearance_x_{a,b}_total".
func documentedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile("`(clearance_[a-z_]*(\\{[a-z,]+\\})?[a-z_]*)`").FindAllStringSubmatch(string(b), -1) {
		name := m[1]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			j := strings.IndexByte(name, '}')
			for _, alt := range strings.Split(name[i+1:j], ",") {
				out[name[:i]+alt+name[j+1:]] = true
			}
			continue
		}
		out[name] = true
	}
	return out
}

// sum adds every series whose key starts with prefix and contains all of the
// label matchers ("method=\"BatchCheck\"").
func sum(m map[string]float64, prefix string, labels ...string) float64 {
	var s float64
	for k, v := range m {
		if !strings.HasPrefix(k, prefix+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(k, l)
		}
		if ok {
			s += v
		}
	}
	return s
}

// TestMetricsAfterRealTraffic runs the real `clearance serve --dev` (embedded
// engine and store), drives it with real requests (an index push, a search, a
// ticket read, a denied read, a 429, refused tokens) and checks on /metrics that
// every layer's series moved, and that the embedded OpenFGA's own metrics are
// served beside ours.
func TestMetricsAfterRealTraffic(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	// A rate limit low enough that anne's fifth read is refused (429).
	base := startServe(t, data, "--rate-limit", "0.01", "--rate-burst", "4")
	before := scrape(t, base)

	_, admin, tickets := loadTestdataOrg(t, data, base)
	if res, err := admin.UpsertTickets(ctx, tickets); err != nil || res.Indexed != len(tickets) {
		t.Fatalf("index push: %+v %v", res, err)
	}

	// One attempt per call: the 429 below must reach the test, not a retry.
	anne, _ := client.New(client.Config{Server: base, Credential: mint(t, data, "anne", "acme"), Attempts: 1})
	if sr, err := anne.Search(ctx, client.SearchRequest{Query: "login timeout", TopK: 5}); err != nil || len(sr.Results) == 0 {
		t.Fatalf("search: %+v %v", sr, err)
	}
	if _, err := anne.Ticket(ctx, "WEB-1"); err != nil {
		t.Fatalf("read WEB-1: %v", err)
	}
	if _, err := anne.Ticket(ctx, "SEC-1"); !errors.Is(err, clearance.ErrNotFound) {
		t.Fatalf("read SEC-1: %v, want ErrNotFound", err)
	}
	// Burst 4: the fourth read passes, the fifth is refused.
	var limited bool
	for range 3 {
		_, err := anne.Search(ctx, client.SearchRequest{Query: "checkout error", TopK: 3})
		var ce *client.Error
		limited = limited || errors.As(err, &ce) && ce.Status == http.StatusTooManyRequests
	}
	if !limited {
		t.Fatal("no 429 after the burst")
	}
	// Refused credentials: no trusted issuer, and a token for another audience.
	for _, tok := range []string{"not.a.token", mint(t, data, "anne", "acme", "--audience", "https://elsewhere.example")} {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/tickets/WEB-1", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("bad token: %d", resp.StatusCode)
		}
	}

	after := scrape(t, base)
	moved := func(prefix string, labels ...string) {
		t.Helper()
		if d := sum(after, prefix, labels...) - sum(before, prefix, labels...); d <= 0 {
			t.Errorf("%s%v did not move (before %g, after %g)", prefix, labels, sum(before, prefix, labels...), sum(after, prefix, labels...))
		}
	}
	// Engine calls by method and outcome, with latency and batch size.
	moved("clearance_authz_requests_total", `method="Write"`, `outcome="ok"`)
	moved("clearance_authz_requests_total", `method="ListObjects"`, `outcome="ok"`)
	moved("clearance_authz_requests_total", `method="BatchCheck"`, `outcome="ok"`)
	moved("clearance_authz_request_duration_seconds_count", `method="BatchCheck"`)
	moved("clearance_authz_batch_check_size_count")
	// Store searches by plan; the embedder.
	moved("clearance_store_searches_total", `plan="exact"`, `outcome="ok"`)
	moved("clearance_store_search_duration_seconds_count", `plan="exact"`)
	moved("clearance_store_gets_total", `outcome="ok"`)
	moved("clearance_embed_requests_total", `outcome="ok"`)
	// Answers: the search, the read and the denied read (answered as missing).
	moved("clearance_answers_total", `kind="search"`, `path="prefilter"`, `principal_kind="user"`)
	moved("clearance_answers_total", `kind="ticket"`, `status="complete"`)
	moved("clearance_answers_total", `kind="ticket"`, `status="exhausted"`)
	moved("clearance_candidates_total", `kind="search"`, `stage="checked"`)
	moved("clearance_answer_stage_duration_seconds_count", `kind="search"`, `stage="prefilter"`)
	moved("clearance_answer_stage_duration_seconds_count", `kind="search"`, `stage="check"`)
	moved("clearance_prefilter_cache_misses_total")
	// Audit appends and group commits.
	moved("clearance_audit_appends_total", `outcome="ok"`)
	moved("clearance_audit_append_duration_seconds_count")
	moved("clearance_audit_flush_records_count")
	moved("clearance_audit_flushes_total", `outcome="ok"`)
	// Admission control refused the fifth read.
	moved("clearance_admission_rejections_total", `class="reads"`, `reason="rate_limit"`, `status="429"`)
	moved("clearance_admission_wait_seconds_count", `class="reads"`)
	moved("clearance_admission_wait_seconds_count", `class="writes"`) // the index push
	// The index push.
	moved("clearance_indexer_runs_total", `trigger="push"`, `outcome="ok"`)
	moved("clearance_indexer_rows_total", `trigger="push"`, `outcome="embedded"`)
	moved("clearance_indexer_last_success_timestamp_seconds", `trigger="push"`)
	// Refused tokens by reason.
	moved("clearance_auth_failures_total", `reason="unknown_issuer"`)
	moved("clearance_auth_failures_total", `reason="audience"`)
	moved("clearance_http_request_duration_seconds_count", `route="/v1/search"`, `status="200"`)

	if got := sum(after, "clearance_build_info", `goversion="go`); got != 1 {
		t.Errorf("clearance_build_info = %g, want 1", got)
	}
	for _, name := range []string{"clearance_decision_cache_hits_total{}", `clearance_admission_queue_depth{class="reads"}`,
		`clearance_admission_queue_depth{class="writes"}`, "clearance_prefilter_cache_entries{}"} {
		if _, ok := after[name]; !ok {
			t.Errorf("%s not served", name)
		}
	}
	var openfga []string
	for k := range after {
		if strings.HasPrefix(k, "openfga_") {
			openfga = append(openfga, k)
		}
		for _, bad := range []string{"tenant=", "principal=", "ticket=", "query="} {
			if strings.HasPrefix(k, "clearance_") && strings.Contains(k, bad) {
				t.Errorf("high-cardinality label in %s", k)
			}
		}
	}
	if len(openfga) == 0 {
		t.Error("no openfga_ metric served")
	}
	// Every clearance_ family on the endpoint passes Prometheus's naming lint.
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.New(resp.Body).Lint()
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "clearance_") {
			t.Errorf("lint %s: %s", p.Metric, p.Text)
		}
	}
	t.Logf("%d series, %d of them openfga_", len(after), len(openfga))
	// Every clearance_ family served is in the metrics reference.
	documented := documentedMetrics(t)
	for k := range after {
		name := k[:strings.IndexByte(k, '{')]
		if !strings.HasPrefix(name, "clearance_") {
			continue
		}
		base := strings.TrimSuffix(strings.TrimSuffix(name, "_count"), "_sum")
		if !documented[name] && !documented[base] {
			t.Errorf("%s is not in docs/operations.md's metrics reference", name)
		}
	}
	if os.Getenv("METRICS_DUMP") != "" {
		for k := range after {
			t.Log(k)
		}
	}
}
