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
	// Flow holds the flow check's rows (FlowOrg), when they were run.
	Flow            []FlowRow `json:"flow,omitempty"`
	FlowOrgTuples   int       `json:"flow_org_tuples,omitempty"`
	FlowLoadSeconds float64   `json:"flow_load_seconds,omitempty"`
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
	// The flow rows come after the search table; a flow-only run has no search
	// org.
	defer r.writeFlow(w)
	if len(r.Rows) == 0 {
		return
	}
	o := r.Org
	fmt.Fprintf(w, "Org: %d tenants, %d projects, %d tickets, %d chunks, %d tuples, %d principals. ",
		o.Tenants, o.Projects, o.Tickets, o.Chunks, o.Tuples, o.Viewers)
	fmt.Fprintf(w, "Load: tuples %.1f s, embed %.1f s, store %.1f s (%.0f chunks/s)",
		r.Load.EngineSeconds, r.Load.EmbedSeconds, r.Load.StoreSeconds, r.Load.ChunksPerSec)
	if r.Load.IndexSeconds > 0 {
		fmt.Fprintf(w, ", then the search indexes %.1f s (%.0f chunks/s with them)", r.Load.IndexSeconds,
			float64(r.Load.Chunks)/(float64(r.Load.Chunks)/r.Load.ChunksPerSec+r.Load.IndexSeconds))
	}
	fmt.Fprintf(w, ". RSS after load %.0f MiB.\n\n", float64(r.RSSBytes)/(1<<20))
	fmt.Fprintf(w, "| strategy | visibility | principal | queries | samples | p50 ms | p95 ms | p99 ms | recall@%d | leaks | engine calls/q | candidates/q | statuses |\n", r.K)
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, row := range r.Rows {
		var st []string
		for _, k := range slices.Sorted(maps.Keys(row.Statuses)) {
			st = append(st, fmt.Sprintf("%s %d", k, row.Statuses[k]))
		}
		recall := fmt.Sprintf("%.3f", row.Recall)
		if strings.HasPrefix(row.Strategy, "floor") {
			recall = "n/a"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %d | %.2f | %.2f | %.2f | %s | %d | %.1f | %.0f | %s |\n",
			row.Strategy, row.Bucket, row.Kind, row.Queries, row.Samples, row.P50ms, row.P95ms, row.P99ms, recall,
			row.Leaks, row.EngineCalls, row.Candidates, strings.Join(st, ", "))
	}
	fmt.Fprintln(w)
	r.writeCacheSummary(w)
}

// Planner and floor row names the summary reads.
const (
	rowFloor      = "floor: list + scan + check"
	rowFloorList  = "floor: ListObjects(project)"
	rowFloorScan  = "floor: store scan"
	rowFloorCheck = "floor: BatchCheck(k)"
	rowCold       = "clearance (cold cache)"
	rowWarm       = "clearance (warm cache)"
	rowDecisions  = "clearance (warm decisions)"
)

// writeCacheSummary derives the decision cache's figures from the rows: the
// floor (its three parts run as one query, sampled interleaved with the
// planner) against the cold planner, with each one's stages, and the store
// scan against the warm-decisions planner.
func (r *Report) writeCacheSummary(w io.Writer) {
	type bk struct{ bucket, kind string }
	by := map[string]map[bk]Row{}
	var order []bk
	seen := map[bk]bool{}
	for _, row := range r.Rows {
		if by[row.Strategy] == nil {
			by[row.Strategy] = map[bk]Row{}
		}
		k := bk{row.Bucket, row.Kind}
		by[row.Strategy][k] = row
		if !seen[k] {
			seen[k] = true
			order = append(order, k)
		}
	}
	if by[rowCold] == nil || by[rowDecisions] == nil || by[rowFloorScan] == nil || by[rowFloor] == nil {
		return
	}
	fmt.Fprintln(w, "Derived (ms). floor = ListObjects(project) (users: after the tenant-admin Check; no direct shares for agents) + store scan + BatchCheck(k), run as one query; "+
		"parts summed = the three parts each measured alone, summed per percentile. Every sample of the floor and planner rows is taken interleaved, one of each per round. "+
		"p99 is the n-th slowest of the samples (ceiling rank); its 90% interval is a paired bootstrap over the rounds (each round's floor and cold samples resampled together), the spread one run's p99 ratio has on this machine. Stages are medians: floor list / scan / check; cold prefilter (revision probe and listings) / store search / checks / the rest (embedding, audit record).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| visibility | principal | samples (p99 = n-th slowest) | floor p50 / p99 | cold p50 / p99 | cold ÷ floor p50 / p99 | p99 ratio, 90% interval | parts summed p50 / p99 | floor stages p50 | cold stages p50 | cold engine calls/q |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, k := range order {
		floor, ok1 := by[rowFloor][k]
		cold, ok2 := by[rowCold][k]
		scan, ok3 := by[rowFloorScan][k]
		list, ok4 := by[rowFloorList][k]
		check, ok5 := by[rowFloorCheck][k]
		if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
			continue
		}
		fs, cs := floor.StageP50ms, cold.StageP50ms
		rest := cs["total"] - cs["prefilter"] - cs["search"] - cs["check"]
		lo, hi := ratioCI(cold.LatenciesMs, floor.LatenciesMs, 99, 0.9)
		fmt.Fprintf(w, "| %s | %s | %d (%d) | %.2f / %.2f | %.2f / %.2f | %.2f× / %.2f× | %.2f–%.2f× | %.2f / %.2f | %.2f / %.2f / %.2f | %.2f / %.2f / %.2f / %.2f | %.1f |\n",
			k.bucket, k.kind, cold.Samples, cold.P99Rank, floor.P50ms, floor.P99ms, cold.P50ms, cold.P99ms,
			cold.P50ms/floor.P50ms, cold.P99ms/floor.P99ms, lo, hi,
			list.P50ms+scan.P50ms+check.P50ms, list.P99ms+scan.P99ms+check.P99ms,
			fs["prefilter"], fs["search"], fs["check"], cs["prefilter"], cs["search"], cs["check"], rest, cold.EngineCalls)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| visibility | principal | store scan p50 | warm decisions p50 / p99 | warm decisions − scan p50 | warm cache p50 |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|")
	for _, k := range order {
		dec, ok1 := by[rowDecisions][k]
		scan, ok2 := by[rowFloorScan][k]
		if !ok1 || !ok2 {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %.2f | %.2f / %.2f | %+.2f | %.2f |\n",
			k.bucket, k.kind, scan.P50ms, dec.P50ms, dec.P99ms, dec.P50ms-scan.P50ms, by[rowWarm][k].P50ms)
	}
	fmt.Fprintln(w)
}

func (r *Report) writeFlow(w io.Writer) {
	if len(r.Flow) == 0 {
		return
	}
	fmt.Fprintf(w, "Flow org: tenant fb, %d tuples, loaded in %.1f s.\n\n", r.FlowOrgTuples, r.FlowLoadSeconds)
	WriteFlowMarkdown(w, r.Flow)
}
