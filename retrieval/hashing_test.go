package retrieval_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/testdata"
)

func TestHashingDeterministicUnitVectors(t *testing.T) {
	ctx := context.Background()
	for _, dim := range []int{8, 64, 384, 1024} {
		h := retrieval.NewHashing(retrieval.HashingConfig{Dim: dim})
		if h.Dim() != dim || !strings.Contains(h.Model(), "hashing") {
			t.Fatalf("dim %d: Dim %d, Model %q", dim, h.Dim(), h.Model())
		}
		texts := []string{"Login timeout on SSO redirect", "", "   ...   ", "Ünïcödé ÆRROR-42 in Zürich", strings.Repeat("word ", 5000)}
		a, err := h.Embed(ctx, texts)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := retrieval.NewHashing(retrieval.HashingConfig{Dim: dim}).Embed(ctx, texts)
		for i := range texts {
			if len(a[i]) != dim {
				t.Fatalf("dim %d text %d: length %d", dim, i, len(a[i]))
			}
			if !slices.Equal(a[i], b[i]) {
				t.Fatalf("dim %d text %d: not deterministic", dim, i)
			}
			var n float64
			for _, x := range a[i] {
				n += float64(x) * float64(x)
			}
			if math.Abs(n-1) > 1e-4 {
				t.Fatalf("dim %d text %d: norm² %f, want 1", dim, i, n)
			}
		}
	}
	if retrieval.NewHashing(retrieval.HashingConfig{}).Dim() != 384 {
		t.Fatal("default dimension is not 384")
	}
}

func TestHashingCaseAndPunctuationInsensitive(t *testing.T) {
	h := retrieval.NewHashing(retrieval.HashingConfig{Dim: 256})
	v, _ := h.Embed(context.Background(), []string{"Payment gateway: ERR-5012!", "payment GATEWAY err 5012"})
	if dot(v[0], v[1]) < 0.999 {
		t.Fatalf("same words, other case and punctuation: similarity %.4f", dot(v[0], v[1]))
	}
}

func TestHashingRareWordsDominate(t *testing.T) {
	h := retrieval.NewHashing(retrieval.HashingConfig{Dim: 384})
	v, _ := h.Embed(context.Background(), []string{
		"the checkout fails with error KX-7781 for the user",
		"checkout KX-7781",
		"the user is not able to do it for the team",
	})
	if rare, common := dot(v[0], v[1]), dot(v[0], v[2]); rare <= common {
		t.Fatalf("sharing the rare words scores %.3f, sharing only stop words %.3f", rare, common)
	}
}

// TestHashingLexicalRecallOnDemoTickets shows that on the demo corpus a query made
// of a ticket's rarest words (words that appear in at most two tickets) finds that
// ticket first, for nearly every ticket.
func TestHashingLexicalRecallOnDemoTickets(t *testing.T) {
	ctx := context.Background()
	var tickets []retrieval.Ticket
	sc := bufio.NewScanner(bytes.NewReader(testdata.Tickets))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var tk retrieval.Ticket
		if err := json.Unmarshal(sc.Bytes(), &tk); err != nil {
			t.Fatal(err)
		}
		tickets = append(tickets, tk)
	}
	if len(tickets) < 100 {
		t.Fatalf("demo corpus has %d tickets", len(tickets))
	}
	words := func(s string) []string {
		return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
		})
	}
	df := map[string]int{}
	for _, tk := range tickets {
		seen := map[string]bool{}
		for _, w := range words(tk.Title + " " + tk.Body) {
			if !seen[w] {
				seen[w] = true
				df[w]++
			}
		}
	}
	h := retrieval.NewHashing(retrieval.HashingConfig{Dim: 384})
	texts := make([]string, len(tickets))
	for i, tk := range tickets {
		texts[i] = tk.Title + "\n\n" + tk.Body
	}
	docs, err := h.Embed(ctx, texts)
	if err != nil {
		t.Fatal(err)
	}
	queries, hits, top3 := 0, 0, 0
	for i, tk := range tickets {
		var rare []string
		seen := map[string]bool{}
		for _, w := range words(tk.Title + " " + tk.Body) {
			if df[w] <= 2 && len(w) >= 4 && !seen[w] {
				seen[w] = true
				rare = append(rare, w)
			}
		}
		if len(rare) < 2 {
			continue
		}
		q, _ := h.Embed(ctx, []string{strings.Join(rare[:min(3, len(rare))], " ")})
		type scored struct {
			i int
			s float32
		}
		ranking := make([]scored, len(docs))
		for j, d := range docs {
			ranking[j] = scored{j, dot(q[0], d)}
		}
		slices.SortFunc(ranking, func(a, b scored) int { return cmp.Compare(b.s, a.s) })
		queries++
		if ranking[0].i == i {
			hits++
		}
		for _, r := range ranking[:3] {
			if r.i == i {
				top3++
			}
		}
	}
	if queries < 50 {
		t.Fatalf("only %d tickets have two rare words", queries)
	}
	t.Logf("rare-word queries: %d; ticket ranked first %d (%.1f%%), in top 3 %d (%.1f%%)",
		queries, hits, 100*float64(hits)/float64(queries), top3, 100*float64(top3)/float64(queries))
	if float64(top3) < 0.9*float64(queries) {
		t.Fatalf("the ticket is in the top 3 for only %d of %d rare-word queries", top3, queries)
	}
}

func dot(a, b []float32) float32 {
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func BenchmarkHashingEmbed(b *testing.B) {
	h := retrieval.NewHashing(retrieval.HashingConfig{Dim: 384})
	text := strings.Repeat("The checkout service returns HTTP 502 after the payments gateway deploy; customers in eu-west see timeouts. ", 8)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := h.Embed(context.Background(), []string{text}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHashingQueriesFindTicketsSharingRareWords: on a small fixed corpus where
// every ticket shares common support words ("error", "customer", "fails") with the
// others, a short query finds the one ticket that shares its rare words, even with
// other case, punctuation and word order.
func TestHashingQueriesFindTicketsSharingRareWords(t *testing.T) {
	corpus := []string{
		"Login fails for the customer: SAML assertion rejected because of clock skew on the IdP",
		"Customer reports checkout error 502 from the payments gateway after the deploy",
		"CSV export fails with an out of memory error for customers with large projects",
		"Password reset e-mail never arrives; customer checked the spam folder, still an error",
		"Webhook deliveries to Slack fail with error 410 Gone since the customer rotated the URL",
		"Dashboard loads slowly for the customer; p99 latency of the reports endpoint is 9 seconds",
		"Mobile app crashes on Android 14 when the customer opens an attachment, error in PdfRenderer",
		"Invoice PDF shows the wrong VAT rate for German customers after the tax table update",
		"SSO login fails for the customer after Okta certificate rotation, error invalid signature",
		"Customer cannot upload files larger than 2 GB, the S3 multipart upload fails with error",
		"Search returns stale results for the customer; Elasticsearch reindex job failed overnight",
		"Two-factor codes rejected for the customer; TOTP drift because the phone clock is wrong",
		"Customer asks to delete their account under GDPR; the deletion job fails with an error",
		"Rate limiting error 429 for the customer's API integration during the nightly sync",
		"Timezone bug: the customer's scheduled reports run an hour late after the DST change",
	}
	queries := map[string]int{
		"saml clock skew":                      0,
		"payments gateway 502":                 1,
		"CSV export out of memory":             2,
		"slack webhook 410":                    4,
		"android attachment crash PdfRenderer": 6,
		"VAT rate invoice":                     7,
		"okta certificate rotation":            8,
		"S3 multipart upload":                  9,
		"elasticsearch reindex stale":          10,
		"TOTP drift":                           11,
		"GDPR deletion":                        12,
		"429 rate limiting API":                13,
		"DST timezone":                         14,
	}
	h := retrieval.NewHashing(retrieval.HashingConfig{})
	docs, err := h.Embed(context.Background(), corpus)
	if err != nil {
		t.Fatal(err)
	}
	for q, want := range queries {
		v, err := h.Embed(context.Background(), []string{q})
		if err != nil {
			t.Fatal(err)
		}
		best, second := -1, float32(-2)
		var bestScore float32 = -2
		for i, d := range docs {
			s := dot(v[0], d)
			if s > bestScore {
				best, second, bestScore = i, bestScore, s
			} else if s > second {
				second = s
			}
		}
		if best != want {
			t.Errorf("query %q: best hit %q (%.3f), want %q", q, corpus[best], bestScore, corpus[want])
		}
		t.Logf("%-38q best %.3f, runner-up %.3f", q, bestScore, second)
	}
}

// BenchmarkHashingTickets embeds every demo ticket (title and body) per op and
// reports the cost per ticket.
func BenchmarkHashingTickets(b *testing.B) {
	var texts []string
	bytesTotal := 0
	sc := bufio.NewScanner(bytes.NewReader(testdata.Tickets))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var tk retrieval.Ticket
		if err := json.Unmarshal(sc.Bytes(), &tk); err != nil {
			b.Fatal(err)
		}
		texts = append(texts, tk.Title+"\n\n"+tk.Body)
		bytesTotal += len(texts[len(texts)-1])
	}
	h := retrieval.NewHashing(retrieval.HashingConfig{Dim: 384})
	b.SetBytes(int64(bytesTotal))
	for b.Loop() {
		if _, err := h.Embed(context.Background(), texts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(texts)), "ns/ticket")
	b.ReportMetric(float64(bytesTotal)/float64(len(texts)), "bytes/ticket")
}
