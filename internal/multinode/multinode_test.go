package multinode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clearance-dev/clearance/api/auth"
	"github.com/clearance-dev/clearance/indexer"
	"github.com/clearance-dev/clearance/internal/testenv"
)

const (
	tenant   = "acme"
	audience = "http://clearance.multinode.test"
	nUsers   = 8 // u0..u7, ui a member of project p(i%4)
)

var projects = []string{"p0", "p1", "p2", "p3"}

var vocabulary = strings.Fields(`login timeout sso okta redirect invoice billing export csv report
dashboard latency database migration index crash memory leak upload attachment email
notification webhook retry queue cache token refresh password reset mobile android push
permission role audit search filter sort pagination printer warehouse shipment refund`)

func words(r *rand.Rand, n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = vocabulary[r.IntN(len(vocabulary))]
	}
	return strings.Join(w, " ")
}

// loadDuration is CLEARANCE_MULTINODE_LOAD (default 20s).
func loadDuration(t *testing.T) time.Duration {
	t.Helper()
	d := 20 * time.Second
	if s := os.Getenv("CLEARANCE_MULTINODE_LOAD"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < 3*time.Second {
			t.Fatalf("CLEARANCE_MULTINODE_LOAD=%q: want a duration of at least 3s", s)
		}
	}
	return d
}

type ticketJSON struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Project   string    `json:"project"`
	Title     string    `json:"title"`
	Body      string    `json:"body"`
	UpdatedAt time.Time `json:"updated_at"`
}

// writeJSONL writes tickets to path atomically (the scheduled indexer may be
// reading the directory).
func writeJSONL(t *testing.T, path string, tickets []ticketJSON) {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, tk := range tickets {
		if err := enc.Encode(tk); err != nil {
			t.Error(err)
			return
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o600); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Error(err)
	}
}

func TestMultiNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two openfga servers and two clearance replicas")
	}
	loadFor := loadDuration(t)
	db := testenv.DatabaseURL(t)
	testenv.OpenFGABinary(t)
	bin := buildClearance(t)
	dir := t.TempDir()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))

	// Two OpenFGA servers on clearance's own database: one cluster.
	testenv.MigrateOpenFGAPostgres(t, db)
	fga1 := testenv.StartOpenFGAPostgres(t, db, "")
	fga2 := testenv.StartOpenFGAPostgres(t, db, "")
	app := &fga{servers: []string{fga1.URL, fga2.URL}, http: &http.Client{Timeout: 10 * time.Second}, down: map[string]bool{}}
	if err := app.setup(ctx); err != nil {
		t.Fatal(err)
	}
	g := newTruth()
	write := func(k tupleKey) error {
		g.writing(k, time.Now())
		return app.write(ctx, []tupleKey{k}, nil)
	}
	revoke := func(k tupleKey) error {
		if err := app.write(ctx, nil, []tupleKey{k}); err != nil {
			return err
		}
		g.deleted(k, time.Now())
		return nil
	}

	// The organisation: tenant acme with four projects, ui a member of p(i%4);
	// tenant globex with hank in g0 (isolation).
	var setup []tupleKey
	for _, p := range projects {
		setup = append(setup, tupleKey{User: "tenant:acme", Relation: "tenant", Object: "project:" + p})
	}
	setup = append(setup, tupleKey{User: "tenant:globex", Relation: "tenant", Object: "project:g0"},
		tupleKey{User: "user:hank", Relation: "member", Object: "project:g0"})
	for i := range nUsers {
		setup = append(setup, tupleKey{User: fmt.Sprintf("user:u%d", i), Relation: "member", Object: "project:" + projects[i%4]})
	}
	src := filepath.Join(dir, "source")
	if err := os.Mkdir(src, 0o700); err != nil {
		t.Fatal(err)
	}
	var seed []ticketJSON
	now := time.Now().UTC().Add(-time.Hour)
	for _, p := range projects {
		for i := range 10 {
			seed = append(seed, ticketJSON{ID: fmt.Sprintf("S-%s-%d", p, i), Tenant: tenant, Project: p,
				Title: words(rng, 4), Body: words(rng, 30), UpdatedAt: now})
		}
	}
	for i := range 5 {
		seed = append(seed, ticketJSON{ID: fmt.Sprintf("G-%d", i), Tenant: "globex", Project: "g0",
			Title: words(rng, 4), Body: words(rng, 30), UpdatedAt: now})
	}
	for _, tk := range seed {
		g.ticket(tk.ID, tk.Project)
		setup = append(setup, tupleKey{User: "project:" + tk.Project, Relation: "project", Object: "ticket:" + tk.ID})
	}
	for _, k := range setup {
		g.writing(k, time.Now())
	}
	for c := range slices.Chunk(setup, 50) {
		if err := app.write(ctx, c, nil); err != nil {
			t.Fatal(err)
		}
	}
	writeJSONL(t, filepath.Join(src, "000-seed.jsonl"), seed)

	// One dev issuer key for both replicas (one token works on either), one API
	// key in PostgreSQL for the ticket writer.
	dataA, dataB := filepath.Join(dir, "data-a"), filepath.Join(dir, "data-b")
	for _, d := range []string{dataA, dataB} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	dev, err := auth.LoadOrCreateDevKey(dataA)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, err := os.ReadFile(filepath.Join(dataA, "dev-issuer.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataB, "dev-issuer.jwk"), keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "keys", "create", "--database-url", db, "--data-dir", filepath.Join(dir, "keys"),
		"--tenant", tenant, "--service-account", "writer", "--scope", "clearance:index").Output()
	if err != nil {
		t.Fatalf("keys create: %v", err)
	}
	writerKey := strings.TrimSpace(string(out))
	tokens := map[string]string{}
	mint := func(sub, ten string) {
		tok, err := dev.Mint(auth.TokenRequest{Subject: sub, Tenant: ten, Scopes: []string{"tickets:read"}, Audience: audience, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		tokens[sub] = tok
	}
	var users []string
	for i := range nUsers {
		users = append(users, fmt.Sprintf("u%d", i))
		mint(users[i], tenant)
	}
	users = append(users, "hank")
	mint("hank", "globex")

	// Two replicas started at the same instant, each on its own OpenFGA server,
	// both running the scheduled indexer on the shared source.
	common := []string{"--database-url", db, "--store", "pgvector",
		"--openfga-store-id", app.store, "--openfga-model-id", app.model,
		"--dev", "--audience", audience, "--index-source", src, "--index-every", "1s",
		// A few principals stand for many clients here, and the check phase
		// fetches every written ticket as one member: the per-principal rate
		// limit (10/s by default) would turn this into a test of the limiter.
		"--rate-limit", "1000", "--rate-burst", "1000", "--max-concurrent-per-principal", "16"}
	a := startReplica(t, bin, "a", testenv.FreeAddr(t), dir, append([]string{"--data-dir", dataA, "--openfga-url", fga1.URL}, common...))
	b := startReplica(t, bin, "b", testenv.FreeAddr(t), dir, append([]string{"--data-dir", dataB, "--openfga-url", fga2.URL}, common...))
	a.waitReady(t, time.Minute)
	b.waitReady(t, time.Minute)
	replicas := []*replica{a, b}
	cl := &client{http: &http.Client{Timeout: 30 * time.Second}, replicas: replicas, st: newStats()}

	// The seed is indexed before the load starts.
	for _, id := range []string{"S-p0-0", "S-p3-9"} {
		waitFetchable(t, cl, b, tokens["u"+id[3:4]], id)
	}
	waitFetchable(t, cl, b, tokens["hank"], "G-4")

	loadCtx, stopLoad := context.WithTimeout(ctx, loadFor)
	defer stopLoad()
	var (
		wg       sync.WaitGroup
		recMu    sync.Mutex
		searches []searchRec
		acked    []ticketJSON
		feed     []ticketJSON
		lastFeed time.Time
		fgaDown  time.Time
	)
	fail := func(format string, args ...any) { t.Errorf(format, args...) }

	// Searchers: random principals, random queries, either replica first.
	for s := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(s), 7))
			for loadCtx.Err() == nil {
				user := users[r.IntN(len(users))]
				body, _ := json.Marshal(map[string]any{"query": words(r, 3), "top_k": 10})
				res := cl.call(loadCtx, r.IntN(2), http.MethodPost, "/v1/search", tokens[user], body)
				if res.status != http.StatusOK {
					continue
				}
				var resp struct {
					Results []struct {
						TicketID string `json:"ticket_id"`
					} `json:"results"`
					AuditID string `json:"audit_id"`
				}
				if err := json.Unmarshal(res.body, &resp); err != nil {
					fail("search answer: %v", err)
					continue
				}
				rec := searchRec{user: user, start: res.start, end: res.end, replica: res.replica, auditID: resp.AuditID}
				for _, x := range resp.Results {
					rec.ids = append(rec.ids, x.TicketID)
				}
				recMu.Lock()
				searches = append(searches, rec)
				recMu.Unlock()
			}
		})
	}

	// Ticket writer: the application writes ticket#project to OpenFGA, then
	// pushes the ticket with its service account's API key.
	wg.Go(func() {
		r := rand.New(rand.NewPCG(3, 3))
		for n := 0; loadCtx.Err() == nil; n++ {
			p := projects[r.IntN(len(projects))]
			tk := ticketJSON{ID: fmt.Sprintf("W-%d", n), Tenant: tenant, Project: p, Title: words(r, 4), Body: words(r, 30), UpdatedAt: time.Now().UTC()}
			g.ticket(tk.ID, p)
			if err := write(tupleKey{User: "project:" + p, Relation: "project", Object: "ticket:" + tk.ID}); err != nil {
				fail("write ticket#project: %v", err)
				return
			}
			body, _ := json.Marshal(map[string]any{"tickets": []ticketJSON{tk}})
			if res := cl.call(loadCtx, n%2, http.MethodPost, "/v1/tickets", writerKey, body); res.status == http.StatusOK {
				recMu.Lock()
				acked = append(acked, tk)
				recMu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	// Shares granted and revoked: ticket#viewer for users outside the ticket's
	// project. Two togglers on disjoint users, so each tuple has one writer.
	for w := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 11))
			for loadCtx.Err() == nil {
				i := 2*r.IntN(nUsers/2) + w
				tk := seed[r.IntN(40)]
				if tk.Project == projects[i%4] {
					continue
				}
				k := tupleKey{User: fmt.Sprintf("user:u%d", i), Relation: "viewer", Object: "ticket:" + tk.ID}
				if err := write(k); err != nil {
					fail("share: %v", err)
					return
				}
				time.Sleep(time.Duration(r.IntN(100)) * time.Millisecond)
				if err := revoke(k); err != nil {
					fail("revoke share: %v", err)
					return
				}
				time.Sleep(time.Duration(r.IntN(30)) * time.Millisecond)
			}
		})
	}

	// Memberships granted and revoked: ui joins and leaves p((i+1)%4).
	wg.Go(func() {
		r := rand.New(rand.NewPCG(5, 5))
		for loadCtx.Err() == nil {
			i := r.IntN(nUsers)
			k := tupleKey{User: fmt.Sprintf("user:u%d", i), Relation: "member", Object: "project:" + projects[(i+1)%4]}
			if err := write(k); err != nil {
				fail("membership: %v", err)
				return
			}
			time.Sleep(time.Duration(r.IntN(150)) * time.Millisecond)
			if err := revoke(k); err != nil {
				fail("revoke membership: %v", err)
				return
			}
		}
	})

	// The exported source grows: a new JSONL file every 700 ms for the scheduled
	// indexer, its ticket#project tuples written first.
	wg.Go(func() {
		r := rand.New(rand.NewPCG(9, 9))
		for n := 0; loadCtx.Err() == nil; n++ {
			var batch []ticketJSON
			for j := range 2 {
				p := projects[r.IntN(len(projects))]
				tk := ticketJSON{ID: fmt.Sprintf("F-%d-%d", n, j), Tenant: tenant, Project: p, Title: words(r, 4), Body: words(r, 30), UpdatedAt: time.Now().UTC()}
				g.ticket(tk.ID, p)
				if err := write(tupleKey{User: "project:" + p, Relation: "project", Object: "ticket:" + tk.ID}); err != nil {
					fail("write feed ticket#project: %v", err)
					return
				}
				batch = append(batch, tk)
			}
			writeJSONL(t, filepath.Join(src, fmt.Sprintf("feed-%04d.jsonl", n)), batch)
			recMu.Lock()
			feed, lastFeed = append(feed, batch...), time.Now()
			recMu.Unlock()
			select {
			case <-loadCtx.Done():
			case <-time.After(700 * time.Millisecond):
			}
		}
	})

	// The test takes the indexer's single-runner lock itself for a while, as a
	// third replica would: no replica may start a run meanwhile, though both
	// tick every second. (Index runs are milliseconds long, so two replicas'
	// runs rarely meet by chance; this window makes the exclusion certain to be
	// exercised.)
	absSrc, err := filepath.Abs(src)
	if err != nil {
		t.Fatal(err)
	}
	scheduled := "jsonl:" + absSrc // the source name; POST /v1/tickets batches run as "api"
	var held interval
	wg.Go(func() {
		select {
		case <-loadCtx.Done():
			return
		case <-time.After(loadFor / 10):
		}
		lock := indexer.NewPGLock(db, scheduled)
		for loadCtx.Err() == nil {
			unlock, ok, err := lock.TryLock(loadCtx)
			if err != nil {
				fail("take the indexer lock: %v", err)
				return
			}
			if !ok {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			from := time.Now()
			time.Sleep(3 * time.Second)
			recMu.Lock()
			held = interval{from: from, to: time.Now()}
			recMu.Unlock()
			unlock()
			return
		}
	})

	// Mid-load: kill -9 replica a's OpenFGA server (a then fails closed, its
	// clients move to b), later kill -9 replica a itself.
	wg.Go(func() {
		select {
		case <-loadCtx.Done():
			return
		case <-time.After(loadFor / 3):
		}
		recMu.Lock()
		fgaDown = time.Now()
		recMu.Unlock()
		fga1.Stop()
		t.Logf("killed openfga server 1 at +%s", loadFor/3)
		select {
		case <-loadCtx.Done():
			return
		case <-time.After(loadFor / 3):
		}
		a.kill()
		t.Logf("killed replica a at +%s", 2*loadFor/3)
	})
	wg.Wait()
	if a.killTime().IsZero() || fgaDown.IsZero() {
		t.Fatal("the load ended before the kills")
	}

	// 1. Clients saw only 200, 503 or 429; connections failed only to the killed
	// replica.
	st := cl.st
	for code, n := range st.status {
		if code != http.StatusOK && code != http.StatusServiceUnavailable && code != http.StatusTooManyRequests {
			t.Errorf("%d answers with status %d (%s)", n, code, st.example[code])
		}
	}
	if st.connErrs["b"] > 0 {
		t.Errorf("%d connection errors to replica b, which was never killed", st.connErrs["b"])
	}
	if st.earlyConnErrs > 0 {
		t.Errorf("%d connection errors to replica a before it was killed", st.earlyConnErrs)
	}

	// 2. No leaked and no stale-revoked ticket in any answer.
	// dynamic counts tickets shown through a share or membership granted
	// during the load (outside the user's own project): new access reaching
	// the pre-filter of either replica.
	var leaks, stale, returned, dynamic int
	perReplica := map[string][]string{}
	for _, s := range searches {
		perReplica[s.replica] = append(perReplica[s.replica], s.auditID)
		for _, id := range s.ids {
			returned++
			if s.user != "hank" && g.project(id) != projects[int(s.user[1]-'0')%4] {
				dynamic++
			}
			switch g.judge(s.user, id, s.start, s.end) {
			case leaked:
				leaks++
				if leaks <= 5 {
					t.Errorf("leak: %s was shown %s by replica %s, never granted between %s and %s",
						s.user, id, s.replica, s.start.Format(time.StampMicro), s.end.Format(time.StampMicro))
				}
			case staleRevoked:
				stale++
				if stale <= 5 {
					t.Errorf("stale revocation: %s was shown %s by replica %s in a search started %s, after every grant was revoked",
						s.user, id, s.replica, s.start.Format(time.StampMicro))
				}
			}
		}
	}

	// 3. No acknowledged write lost: every acknowledged ticket can be fetched
	// from the surviving replica by a member of its project; so can every
	// ticket of the source, once a run that started after the last file ended.
	memberOf := func(p string) string { return tokens["u"+p[1:]] }
	lost := 0
	for _, tk := range acked {
		if !fetch(t, cl, b, memberOf(tk.Project), tk) {
			lost++
		}
	}
	waitIndexRun(t, b, lastFeed)
	lostFeed := 0
	for _, tk := range feed {
		if !fetch(t, cl, b, memberOf(tk.Project), tk) {
			lostFeed++
		}
	}
	if lost+lostFeed > 0 {
		t.Errorf("lost writes: %d of %d acknowledged ticket writes, %d of %d source tickets", lost, len(acked), lostFeed, len(feed))
	}

	// 4. The audit log holds a record for every answered search of both
	// replicas, and its chain verifies.
	auditA, auditB := len(perReplica["a"]), len(perReplica["b"])
	if auditA == 0 || auditB == 0 {
		t.Errorf("answered searches: %d from a, %d from b; want some from both", auditA, auditB)
	}
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for name, ids := range perReplica {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_records WHERE id = ANY($1)`, ids).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != len(ids) {
			t.Errorf("replica %s answered %d searches but the audit log has %d of their records", name, len(ids), n)
		}
	}
	var total int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_records`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	verify, err := exec.Command(bin, "audit", "verify", "--database-url", db, "--data-dir", dataB).CombinedOutput()
	if err != nil {
		t.Errorf("clearance audit verify: %v\n%s", err, verify)
	}
	chain := "?"
	for _, line := range strings.Split(string(verify), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "chain:" {
			chain = strings.Join(f[1:], " ")
		}
	}

	// 5. One index run at a time across the replicas, read from their logs:
	// each run's "index run started" .. "finished"/"failed" span lies inside the
	// advisory lock, so spans of different replicas must not overlap. A span
	// still open when a replica was killed ends at the kill.
	if held.from.IsZero() {
		t.Fatal("the test never held the indexer lock")
	}
	spans := map[string][]interval{"test": {held}}
	skipped := 0
	for _, r := range replicas {
		var open *interval
		for _, l := range r.logLines(t) {
			if l.Source != "" && l.Source != scheduled {
				continue
			}
			switch l.Msg {
			case "index run started":
				if open != nil {
					t.Errorf("replica %s: index run started at %s while its previous run was still going", r.name, l.Time)
				}
				open = &interval{from: l.Time}
			case "index run finished", "index run failed":
				if open != nil {
					open.to = l.Time
					spans[r.name] = append(spans[r.name], *open)
					open = nil
				}
			case "index run skipped: another replica holds the single-runner lock":
				skipped++
			}
		}
		if open != nil {
			end := r.killTime()
			if end.IsZero() {
				end = time.Now()
			}
			open.to = end
			spans[r.name] = append(spans[r.name], *open)
		}
	}
	overlaps := 0
	for _, pair := range [][2]string{{"a", "b"}, {"a", "test"}, {"b", "test"}} {
		for _, x := range spans[pair[0]] {
			for _, y := range spans[pair[1]] {
				if x.overlaps(y.from, y.to) {
					overlaps++
					t.Errorf("index runs overlap: %s %s..%s, %s %s..%s", pair[0], x.from.Format(time.StampMicro), x.to.Format(time.StampMicro),
						pair[1], y.from.Format(time.StampMicro), y.to.Format(time.StampMicro))
				}
			}
		}
	}
	if skipped == 0 {
		t.Error("no replica skipped a run for the lock the test held")
	}
	if len(spans["a"])+len(spans["b"]) < 2 {
		t.Errorf("index runs: %d on a, %d on b; want the schedule to have run", len(spans["a"]), len(spans["b"]))
	}
	if leaks > 0 || stale > 0 {
		t.Errorf("%d leaked and %d stale-revoked tickets in %d returned", leaks, stale, returned)
	}

	t.Logf("multinode: load %s; %d search, ticket-write attempts: %d x 200, %d x 503, %d x 429, %d connection errors (killed replica); "+
		"%d answered searches returned %d tickets (%d through access granted during the load): %d leaked, %d stale-revoked; "+
		"%d acknowledged ticket writes, %d lost; %d source tickets, %d lost; audit: %d records (%d searches from a, %d from b), chain %s; "+
		"index runs: %d on a, %d on b, %d skipped for another holder of the lock (the test held it %s), %d overlapping; tuple writes/revocations: %d",
		loadFor, st.total(), st.status[200], st.status[503], st.status[429], st.connErrs["a"],
		len(searches), returned, dynamic, leaks, stale, len(acked), lost, len(feed), lostFeed,
		total, auditA, auditB, chain,
		len(spans["a"]), len(spans["b"]), skipped, held.to.Sub(held.from).Round(time.Millisecond), overlaps, g.count())
}

// searchRec is one answered search.
type searchRec struct {
	user       string
	start, end time.Time
	replica    string
	ids        []string
	auditID    string
}

// stats counts every HTTP attempt of the load.
type stats struct {
	mu            sync.Mutex
	status        map[int]int
	example       map[int]string
	connErrs      map[string]int
	earlyConnErrs int
}

func newStats() *stats {
	return &stats{status: map[int]int{}, example: map[int]string{}, connErrs: map[string]int{}}
}

func (s *stats) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.status {
		n += c
	}
	for _, c := range s.connErrs {
		n += c
	}
	return n
}

// client is the load's HTTP client: it sends a request to one replica and, on
// a connection error, a 503 or a 429, once to the other.
type client struct {
	http     *http.Client
	replicas []*replica
	st       *stats
}

type result struct {
	status     int // 0: no answer
	body       []byte
	replica    string
	start, end time.Time
}

func (c *client) call(ctx context.Context, first int, method, path, cred string, body []byte) result {
	var res result
	for i := range len(c.replicas) {
		r := c.replicas[(first+i)%len(c.replicas)]
		res = c.once(ctx, r, method, path, cred, body)
		if ctx.Err() != nil {
			return result{}
		}
		c.st.mu.Lock()
		switch {
		case res.status == 0:
			c.st.connErrs[r.name]++
			if k := r.killTime(); k.IsZero() || res.end.Before(k) {
				c.st.earlyConnErrs++
			}
		default:
			c.st.status[res.status]++
			if _, ok := c.st.example[res.status]; !ok {
				c.st.example[res.status] = string(res.body)
			}
		}
		c.st.mu.Unlock()
		if res.status != 0 && res.status != http.StatusServiceUnavailable && res.status != http.StatusTooManyRequests {
			return res
		}
	}
	return res
}

func (c *client) once(ctx context.Context, r *replica, method, path, cred string, body []byte) result {
	res := result{replica: r.name, start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, method, r.url+path, bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Authorization", "Bearer "+cred)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		res.end = time.Now()
		if !isConnErr(err) && ctx.Err() == nil {
			res.status, res.body = -1, []byte(err.Error())
		}
		return res
	}
	res.body, _ = io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	resp.Body.Close()
	res.status, res.end = resp.StatusCode, time.Now()
	return res
}

// isConnErr: the replica is gone (refused, reset or cut mid-answer).
func isConnErr(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.EPIPE)
}

// fetch reports whether r answers GET /v1/tickets/{id} with tk, retrying a 503
// a few times.
func fetch(t *testing.T, c *client, r *replica, cred string, tk ticketJSON) bool {
	t.Helper()
	for range 10 {
		res := c.once(context.Background(), r, http.MethodGet, "/v1/tickets/"+tk.ID, cred, nil)
		if res.status == http.StatusServiceUnavailable || res.status == http.StatusTooManyRequests {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		var got ticketJSON
		if res.status == http.StatusOK && json.Unmarshal(res.body, &got) == nil && got.Title == tk.Title && got.Project == tk.Project {
			return true
		}
		t.Errorf("GET /v1/tickets/%s on %s: %d %s", tk.ID, r.name, res.status, res.body)
		return false
	}
	t.Errorf("GET /v1/tickets/%s on %s: still 503 or 429", tk.ID, r.name)
	return false
}

// waitFetchable waits (bounded) until id can be fetched from r.
func waitFetchable(t *testing.T, c *client, r *replica, cred, id string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		res := c.once(context.Background(), r, http.MethodGet, "/v1/tickets/"+id, cred, nil)
		if res.status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not indexed after a minute: %d %s\n%s", id, res.status, res.body, r.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitIndexRun waits (bounded) until r has finished an index run that started
// after since.
func waitIndexRun(t *testing.T, r *replica, since time.Time) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		started := false
		for _, l := range r.logLines(t) {
			switch {
			case l.Msg == "index run started" && strings.HasPrefix(l.Source, "jsonl:") && l.Time.After(since):
				started = true
			case l.Msg == "index run finished" && strings.HasPrefix(l.Source, "jsonl:") && started:
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("replica %s finished no index run started after %s:\n%s", r.name, since, r.logTail())
}
