package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/filter"
)

// Retrieval quality: the generator plants what it later asks for, so it knows
// the right answers without human judgments.
//
//   - known items: a ticket's key (its id), a unique error-code-like identifier
//     and a rare customer name planted in one ticket the viewer may see; the
//     metric is success@1 and MRR@10 (the ticket's rank among the results,
//     grouped by ticket);
//   - topical: synthetic topics, each a handful of invented words planted in
//     about a third of the tickets; a query is two words of a topic, and a
//     ticket's gain is how many of them it holds (0, 1 or 2); the metric is
//     nDCG@10 against the ideal ranking of the tickets the viewer may see.
//
// The planted words are not in the generator's vocabulary, so nothing else
// matches them by accident.

// QualityQuery is one judged query for one viewer.
type QualityQuery struct {
	Kind   string // "key", "identifier", "name" or "topic"
	Viewer *Viewer
	Query  string
	// Target is the known item (known-item kinds).
	Target string
	// Gains are the graded judgments of a topical query: ticket id -> gain.
	Gains map[string]int
}

// QualityLevels are the visibility fractions the quality benchmark asks as:
// a member of a tenth of the projects, of half, and a tenant admin.
var QualityLevels = []float64{0.1, 0.5, 1.0}

// PlantJudgments adds the planted terms to o's tickets (call before Load) and
// returns perKind queries of each kind for each user of QualityLevels.
func PlantJudgments(o *Org, perKind int, seed uint64) []QualityQuery {
	rng := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	used := map[string]bool{}
	for _, w := range o.Vocab {
		used[w] = true
	}
	word := func(syl int) string {
		parts := []string{"ka", "zor", "vex", "lin", "quo", "tar", "mib", "rel", "sun", "dru", "pha", "gol", "nix", "bre", "tov"}
		for {
			var b strings.Builder
			for range syl {
				b.WriteString(parts[rng.IntN(len(parts))])
			}
			if w := b.String(); !used[w] {
				used[w] = true
				return w
			}
		}
	}
	plant := func(t *Ticket, text string) {
		c := rng.IntN(len(t.Chunks))
		t.Chunks[c] += " " + text
		body := strings.Split(t.Body, "\n\n")
		if c < len(body) {
			body[c] += " " + text
			t.Body = strings.Join(body, "\n\n")
		}
	}
	// Topics: 30, six words each, planted in a third of the tickets.
	topics := make([][]string, 30)
	for i := range topics {
		for range 6 {
			topics[i] = append(topics[i], word(3))
		}
	}
	topicOf := make([]int, len(o.Tickets))
	holds := make([]map[string]bool, len(o.Tickets))
	for i := range o.Tickets {
		topicOf[i] = -1
		if rng.IntN(3) != 0 {
			continue
		}
		tp := rng.IntN(len(topics))
		topicOf[i] = tp
		ws := slices.Clone(topics[tp])
		rng.Shuffle(len(ws), func(a, b int) { ws[a], ws[b] = ws[b], ws[a] })
		ws = ws[:2+rng.IntN(3)]
		holds[i] = map[string]bool{}
		for _, w := range ws {
			holds[i][w] = true
		}
		plant(&o.Tickets[i], strings.Join(ws, " "))
	}
	var out []QualityQuery
	for _, level := range QualityLevels {
		for _, v := range o.Viewers {
			if v.Principal.Kind != authz.KindUser || !levelMatches(v, level) {
				continue
			}
			var visible []int
			for i := range o.Tickets {
				if v.CanView(&o.Tickets[i].Ticket) {
					visible = append(visible, i)
				}
			}
			if len(visible) == 0 {
				continue
			}
			for range perKind {
				i := visible[rng.IntN(len(visible))]
				out = append(out, QualityQuery{Kind: "key", Viewer: v, Query: o.Tickets[i].ID, Target: o.Tickets[i].ID})
				i = visible[rng.IntN(len(visible))]
				code := fmt.Sprintf("ERR_%s_%d", strings.ToUpper(word(2)), 100+rng.IntN(9900))
				plant(&o.Tickets[i], "failed with "+code)
				out = append(out, QualityQuery{Kind: "identifier", Viewer: v, Query: code, Target: o.Tickets[i].ID})
				i = visible[rng.IntN(len(visible))]
				name := word(3)
				name = strings.ToUpper(name[:1]) + name[1:]
				plant(&o.Tickets[i], "customer "+name+" reported it")
				// The name and a common word (the vocabulary's head), as people type.
				out = append(out, QualityQuery{Kind: "name", Viewer: v, Query: name + " " + o.Vocab[rng.IntN(40)], Target: o.Tickets[i].ID})
				tp := rng.IntN(len(topics))
				ws := slices.Clone(topics[tp])
				rng.Shuffle(len(ws), func(a, b int) { ws[a], ws[b] = ws[b], ws[a] })
				q := QualityQuery{Kind: "topic", Viewer: v, Query: ws[0] + " " + ws[1], Gains: map[string]int{}}
				for _, j := range visible {
					if topicOf[j] == tp {
						if g := btoi(holds[j][ws[0]]) + btoi(holds[j][ws[1]]); g > 0 {
							q.Gains[o.Tickets[j].ID] = g
						}
					}
				}
				out = append(out, q)
			}
		}
	}
	return out
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// levelMatches picks the users of a visibility level (the admin for 1.0).
func levelMatches(v *Viewer, level float64) bool {
	if level >= 1 {
		return v.Admin
	}
	return !v.Admin && slices.Contains(Buckets, level) && math.Abs(v.bucketAsked()-level) < 1e-9
}

// bucketAsked is the bucket the user was generated for (Bucket holds the real
// fraction, rounded up in small tenants); user names are t<tenant>-u<bucket>-<n>.
func (v *Viewer) bucketAsked() float64 {
	var tn, bi, n int
	if _, err := fmt.Sscanf(v.Principal.User, "t%d-u%d-%d", &tn, &bi, &n); err != nil || bi < 0 || bi >= len(Buckets) {
		return -1
	}
	return Buckets[bi]
}

// QualityRow is the measurement of one mode at one visibility level.
type QualityRow struct {
	Mode       string  `json:"mode"`
	Level      string  `json:"level"`
	KnownItems int     `json:"known_items"`
	Success1   float64 `json:"success_at_1"`
	MRR        float64 `json:"mrr_at_10"`
	Topical    int     `json:"topical_queries"`
	NDCG10     float64 `json:"ndcg_at_10"`
	P50ms      float64 `json:"p50_ms"`
	P95ms      float64 `json:"p95_ms"`
	P99ms      float64 `json:"p99_ms"`
	Leaks      int     `json:"leaks"`
}

// Searcher runs one search (filter.Planner).
type Searcher interface {
	Search(ctx context.Context, p authz.Principal, req filter.Request) (filter.Response, error)
}

// QualityVariant is one way of searching: a planner (with its fusion
// settings) and a mode.
type QualityVariant struct {
	Name     string
	Mode     filter.Mode
	Searcher Searcher
}

// RunQuality asks every query in every variant (interleaved, so they share the
// machine's state) and scores the answers. Results are grouped by ticket, top
// 10. A result the viewer may not see counts as a leak.
func RunQuality(ctx context.Context, o *Org, qs []QualityQuery, variants []QualityVariant) ([]QualityRow, error) {
	byID := make(map[string]*Ticket, len(o.Tickets))
	for i := range o.Tickets {
		byID[o.Tickets[i].ID] = &o.Tickets[i]
	}
	type acc struct {
		known, topical int
		s1, mrr, ndcg  float64
		lat            []float64
		leaks          int
	}
	accs := map[[2]string]*acc{}
	get := func(m string, level string) *acc {
		k := [2]string{m, level}
		if accs[k] == nil {
			accs[k] = &acc{}
		}
		return accs[k]
	}
	for _, q := range qs {
		level := BucketName(q.Viewer.bucketAsked())
		for _, v := range variants {
			start := time.Now()
			resp, err := v.Searcher.Search(ctx, q.Viewer.Principal, filter.Request{Query: q.Query, TopK: 10, GroupByTicket: true, Mode: v.Mode})
			if err != nil {
				return nil, fmt.Errorf("%s search %q as %s: %w", v.Name, q.Query, q.Viewer.Principal, err)
			}
			a := get(v.Name, level)
			a.lat = append(a.lat, float64(time.Since(start).Microseconds())/1000)
			var ranked []string
			for _, r := range resp.Results {
				if t := byID[r.TicketID]; t == nil || !q.Viewer.CanView(&t.Ticket) {
					a.leaks++
				}
				ranked = append(ranked, r.TicketID)
			}
			if q.Target != "" {
				a.known++
				if i := slices.Index(ranked, q.Target); i >= 0 {
					a.mrr += 1 / float64(i+1)
					if i == 0 {
						a.s1++
					}
				}
				continue
			}
			a.topical++
			a.ndcg += ndcg(ranked, q.Gains, 10)
		}
	}
	var rows []QualityRow
	for _, level := range QualityLevels {
		for _, v := range variants {
			a := accs[[2]string{v.Name, BucketName(level)}]
			if a == nil {
				continue
			}
			r := QualityRow{Mode: v.Name, Level: BucketName(level), KnownItems: a.known, Topical: a.topical, Leaks: a.leaks,
				P50ms: percentile(a.lat, 50), P95ms: percentile(a.lat, 95), P99ms: percentile(a.lat, 99)}
			if a.known > 0 {
				r.Success1, r.MRR = a.s1/float64(a.known), a.mrr/float64(a.known)
			}
			if a.topical > 0 {
				r.NDCG10 = a.ndcg / float64(a.topical)
			}
			rows = append(rows, r)
		}
	}
	return rows, nil
}

// ndcg is nDCG@k with gains 2^g - 1 and a log2 discount; 1 when nothing is
// relevant (a query with no visible relevant ticket cannot be ranked badly).
func ndcg(ranked []string, gains map[string]int, k int) float64 {
	dcg := 0.0
	for i, id := range ranked[:min(k, len(ranked))] {
		dcg += (math.Pow(2, float64(gains[id])) - 1) / math.Log2(float64(i+2))
	}
	var ideal []int
	for _, g := range gains {
		ideal = append(ideal, g)
	}
	slices.Sort(ideal)
	slices.Reverse(ideal)
	idcg := 0.0
	for i, g := range ideal[:min(k, len(ideal))] {
		idcg += (math.Pow(2, float64(g)) - 1) / math.Log2(float64(i+2))
	}
	if idcg == 0 {
		return 1
	}
	return dcg / idcg
}

// WriteQualityMarkdown writes the rows as a table.
func WriteQualityMarkdown(w io.Writer, rows []QualityRow) {
	fmt.Fprintln(w, "| visibility | mode | known items | success@1 | MRR@10 | topical | nDCG@10 | p50 ms | p95 ms | p99 ms | leaks |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %d | %.3f | %.3f | %d | %.3f | %.2f | %.2f | %.2f | %d |\n",
			r.Level, r.Mode, r.KnownItems, r.Success1, r.MRR, r.Topical, r.NDCG10, r.P50ms, r.P95ms, r.P99ms, r.Leaks)
	}
	// The latency target: hybrid p50 at most 1.3x vector-only, in the
	// same run.
	p50 := map[[2]string]float64{}
	var levels []string
	for _, r := range rows {
		if !slices.Contains(levels, r.Level) {
			levels = append(levels, r.Level)
		}
		p50[[2]string{r.Level, r.Mode}] = r.P50ms
	}
	fmt.Fprintln(w)
	for _, l := range levels {
		v, h, x := p50[[2]string{l, "vector"}], p50[[2]string{l, "hybrid"}], p50[[2]string{l, "lexical"}]
		if v > 0 {
			fmt.Fprintf(w, "- %s: p50 hybrid %.2fx, lexical %.2fx of vector\n", l, h/v, x/v)
		}
	}
}
