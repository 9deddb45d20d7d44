package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Report is the output of one `clearance bench` run.
type Report struct {
	Time     time.Time `json:"time"`
	Command  string    `json:"command"`
	Machine  string    `json:"machine"`
	Scale    string    `json:"scale"`
	Store    string    `json:"store"`
	Engine   string    `json:"engine"`
	K        int       `json:"k"`
	Load     LoadStats `json:"load"`
	RSSBytes uint64    `json:"rss_bytes"`
	Org      OrgStats  `json:"org"`
	Rows     []Row     `json:"rows"`
}

// OrgStats summarises the generated org.
type OrgStats struct {
	Tenants  int `json:"tenants"`
	Projects int `json:"projects"`
	Tickets  int `json:"tickets"`
	Chunks   int `json:"chunks"`
	Tuples   int `json:"tuples"`
	Viewers  int `json:"principals"`
}

// Stats returns the org's summary.
func (o *Org) Stats() OrgStats {
	s := OrgStats{Tenants: o.Config.Tenants, Tickets: len(o.Tickets), Tuples: len(o.Tuples), Viewers: len(o.Viewers)}
	for _, ps := range o.Projects {
		s.Projects += len(ps)
	}
	for _, t := range o.Tickets {
		s.Chunks += len(t.Chunks)
	}
	return s
}

// MachineDescription names the CPU count and OS for the report.
func MachineDescription() string {
	return fmt.Sprintf("%s/%s, %d cores, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
}

// WriteFiles writes report.json and report.md into dir.
func (r *Report) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), b, 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "report.md"))
	if err != nil {
		return err
	}
	r.WriteMarkdown(f)
	return f.Close()
}

// WriteMarkdown writes the result table.
func (r *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "### Scale %s: store %s, engine %s\n\n", r.Scale, r.Store, r.Engine)
	fmt.Fprintf(w, "`%s` on %s, %s.\n\n", r.Command, r.Machine, r.Time.UTC().Format("2006-01-02"))
	o := r.Org
	fmt.Fprintf(w, "Org: %d tenants, %d projects, %d tickets, %d chunks, %d tuples, %d principals. ",
		o.Tenants, o.Projects, o.Tickets, o.Chunks, o.Tuples, o.Viewers)
	fmt.Fprintf(w, "Load: tuples %.1f s, embed %.1f s, store %.1f s (%.0f chunks/s). RSS after load %.0f MiB.\n\n",
		r.Load.EngineSeconds, r.Load.EmbedSeconds, r.Load.StoreSeconds, r.Load.ChunksPerSec, float64(r.RSSBytes)/(1<<20))
	fmt.Fprintf(w, "| strategy | visibility | principal | queries | p50 ms | p95 ms | p99 ms | recall@%d | leaks | engine calls/q | candidates/q | statuses |\n", r.K)
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, row := range r.Rows {
		var st []string
		for _, k := range slices.Sorted(maps.Keys(row.Statuses)) {
			st = append(st, fmt.Sprintf("%s %d", k, row.Statuses[k]))
		}
		recall := fmt.Sprintf("%.3f", row.Recall)
		if strings.HasPrefix(row.Strategy, "floor") {
			recall = "n/a"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %.2f | %.2f | %.2f | %s | %d | %.1f | %.0f | %s |\n",
			row.Strategy, row.Bucket, row.Kind, row.Queries, row.P50ms, row.P95ms, row.P99ms, recall,
			row.Leaks, row.EngineCalls, row.Candidates, strings.Join(st, ", "))
	}
	fmt.Fprintln(w)
}
