// Package bench generates synthetic multi-tenant organisations and ticket corpora
// and runs permission-aware retrieval strategies side by side on them: the naive
// post-filter of a tenant-wide top-N, ListObjects over tickets as the filter, and
// clearance's planner, against the floor of its three unavoidable parts.
//
// The generator knows who may see what by construction, so recall is measured
// against an exact visible top-k computed here, independently of the engine, and
// every returned result is also checked against the engine for leaks.
package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/retrieval"
)

// OrgConfig shapes a synthetic organisation.
type OrgConfig struct {
	// Chunks is the corpus size in chunks (10k, 100k, 1M).
	Chunks int
	// ChunksPerTicket is how many chunks each ticket has.
	ChunksPerTicket int
	// Tenants in the org.
	Tenants int
	// ChunksPerProject sets the number of projects: Chunks / ChunksPerProject.
	ChunksPerProject int
	// UsersPerBucket is how many users (each with an agent) see each visibility
	// fraction of their tenant.
	UsersPerBucket int
	// Seed makes the org reproducible.
	Seed uint64
}

// DefaultOrgConfig returns the shape used by `clearance bench` for a scale.
func DefaultOrgConfig(chunks int) OrgConfig {
	return OrgConfig{
		Chunks:           chunks,
		ChunksPerTicket:  2,
		Tenants:          4,
		ChunksPerProject: 250,
		UsersPerBucket:   1,
		Seed:             42,
	}
}

// Buckets are the visibility fractions of a tenant's projects the users get; 1.0
// is a tenant admin. Where a fraction is less than half of one of the tenant's
// projects (0.1% at 100k chunks, 0.1% and 1% at 10k), the users of that bucket
// get a small project of their own that holds that fraction of the tenant's
// tickets instead, so every bucket is measured at every scale.
var Buckets = []float64{0.001, 0.01, 0.1, 0.5, 1.0}

// smallProjects returns, for each bucket index whose fraction rounds to no
// project out of perTenant, the period of the tenant's tickets its small
// project takes (every period-th ticket, at offset the bucket index).
func smallProjects(perTenant int) map[int]int {
	out := map[int]int{}
	for bi, f := range Buckets {
		if f < 1 && math.Round(f*float64(perTenant)) == 0 {
			out[bi] = int(math.Round(1 / f))
		}
	}
	return out
}

func smallProject(tenant string, bi int) string { return fmt.Sprintf("%s-small%d", tenant, bi) }

// BucketName formats a visibility fraction ("0.1%", "100% (admin)").
func BucketName(f float64) string {
	s := strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.1f", f*100), "0"), ".") + "%"
	if f >= 1 {
		s += " (admin)"
	}
	return s
}

// Ticket is one generated ticket with its chunk texts.
type Ticket struct {
	retrieval.Ticket
	Chunks []string
}

// Viewer is a principal of the org with its ground-truth visibility.
type Viewer struct {
	Principal authz.Principal
	Bucket    float64
	// Admin sees the whole tenant.
	Admin bool
	// Projects the user can view (member, viewer, owner, via teams).
	Projects map[string]bool
	// Shared tickets (direct viewer/editor) and Blocked tickets.
	Shared  map[string]bool
	Blocked map[string]bool
	// Granted projects, for an agent principal: the delegation's consent.
	Granted map[string]bool
}

// CanView is the reference decision: the model's can_view / agent_can_view
// evaluated on the generator's own sets.
func (v *Viewer) CanView(t *retrieval.Ticket) bool {
	if t.Tenant != v.Principal.Tenant || v.Blocked[t.ID] {
		return false
	}
	if !(v.Admin || v.Projects[t.Project] || v.Shared[t.ID]) {
		return false
	}
	if v.Principal.Kind == authz.KindAgent {
		return v.Granted[t.Project]
	}
	return true
}

// Org is a generated organisation: tuples for the engine, tickets for the store and
// the principals to query as.
type Org struct {
	Config   OrgConfig
	Tuples   []authz.Tuple
	Tickets  []Ticket
	Viewers  []*Viewer
	Projects map[string][]string // tenant -> projects
	Vocab    []string
}

// GenerateOrg builds an organisation deterministically from cfg.
func GenerateOrg(cfg OrgConfig) *Org {
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	o := &Org{Config: cfg, Projects: map[string][]string{}, Vocab: vocabulary()}
	nTickets := max(1, cfg.Chunks/max(1, cfg.ChunksPerTicket))
	nProjects := max(cfg.Tenants, cfg.Chunks/max(1, cfg.ChunksPerProject))
	perTenant := nProjects / cfg.Tenants
	add := func(user, rel, obj string) {
		o.Tuples = append(o.Tuples, authz.Tuple{User: user, Relation: rel, Object: obj})
	}
	small := smallProjects(perTenant)
	for ti := range cfg.Tenants {
		tenant := fmt.Sprintf("t%d", ti)
		for pi := range perTenant {
			p := fmt.Sprintf("%s-p%04d", tenant, pi)
			o.Projects[tenant] = append(o.Projects[tenant], p)
			add("tenant:"+tenant, "tenant", "project:"+p)
		}
		// Not in o.Projects: only their bucket's users are given them.
		for bi := range Buckets {
			if small[bi] > 0 {
				add("tenant:"+tenant, "tenant", "project:"+smallProject(tenant, bi))
			}
		}
	}
	// Tickets: spread over projects with a skew, so some projects are busy.
	zipfWords := rand.NewZipf(rng, 1.1, 8, uint64(len(o.Vocab)-1))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range nTickets {
		tenant := fmt.Sprintf("t%d", i%cfg.Tenants)
		projects := o.Projects[tenant]
		p := projects[rng.IntN(len(projects))]
		for bi, period := range small {
			if (i/cfg.Tenants)%period == bi {
				p = smallProject(tenant, bi)
			}
		}
		id := fmt.Sprintf("BT-%d", i)
		t := Ticket{Ticket: retrieval.Ticket{
			ID: id, Tenant: tenant, Project: p,
			Title:     sentence(rng, zipfWords, o.Vocab, 6),
			UpdatedAt: base.Add(time.Duration(i) * time.Second),
		}}
		var body []string
		for range cfg.ChunksPerTicket {
			c := sentence(rng, zipfWords, o.Vocab, 40)
			t.Chunks = append(t.Chunks, t.Title+"\n\n"+c)
			body = append(body, c)
		}
		t.Body = strings.Join(body, "\n\n")
		o.Tickets = append(o.Tickets, t)
		add("project:"+p, "project", "ticket:"+id)
	}
	byTenant := map[string][]int{}
	for i, t := range o.Tickets {
		byTenant[t.Tenant] = append(byTenant[t.Tenant], i)
	}
	// Users per tenant and bucket; each has an agent with a grant on half of the
	// user's projects (or, for an admin, on a random 10% of the tenant).
	for ti := range cfg.Tenants {
		tenant := fmt.Sprintf("t%d", ti)
		projects := o.Projects[tenant]
		for bi, f := range Buckets {
			for ui := range cfg.UsersPerBucket {
				name := fmt.Sprintf("%s-u%d-%d", tenant, bi, ui)
				u := &Viewer{
					Principal: authz.Principal{Kind: authz.KindUser, Tenant: tenant, User: name, AuthMethod: "bench"},
					Bucket:    f, Projects: map[string]bool{}, Shared: map[string]bool{}, Blocked: map[string]bool{},
				}
				add("user:"+name, "member", "tenant:"+tenant)
				var mine []string
				if f >= 1 {
					u.Admin = true
					add("user:"+name, "admin", "tenant:"+tenant)
					mine = sample(rng, projects, max(1, len(projects)/10))
				} else if small[bi] > 0 {
					mine = []string{smallProject(tenant, bi)}
					u.Projects[mine[0]] = true
					add("user:"+name, "member", "project:"+mine[0])
				} else {
					n := max(1, int(math.Round(f*float64(len(projects)))))
					// Report what the user really sees: a small tenant cannot give
					// a 0.1% share of projects.
					u.Bucket = float64(n) / float64(len(projects))
					mine = sample(rng, projects, n)
					// Half through a team (nested once), half directly, in mixed roles.
					team := "team:" + name + "-team"
					outer := "team:" + name + "-org"
					add("user:"+name, "member", team)
					add(team+"#member", "member", outer)
					roles := []string{"owner", "member", "viewer"}
					for j, p := range mine {
						u.Projects[p] = true
						who := "user:" + name
						if j%2 == 1 {
							who = outer + "#member"
						}
						add(who, roles[j%3], "project:"+p)
					}
				}
				// Direct shares of tickets outside the user's projects, and blocks
				// inside them.
				idx := byTenant[tenant]
				for range 3 {
					t := o.Tickets[idx[rng.IntN(len(idx))]]
					if !u.Projects[t.Project] && !u.Admin {
						u.Shared[t.ID] = true
						add("user:"+name, "viewer", "ticket:"+t.ID)
					}
				}
				for range 2 {
					t := o.Tickets[idx[rng.IntN(len(idx))]]
					if u.Admin || u.Projects[t.Project] {
						u.Blocked[t.ID] = true
						add("user:"+name, "blocked", "ticket:"+t.ID)
					}
				}
				o.Viewers = append(o.Viewers, u)
				// The user's agent.
				agent := "copilot"
				del := "delegation:" + authz.DelegationID(name, agent)
				add("user:"+name, "delegator", del)
				add("agent:"+agent, "agent", del)
				a := &Viewer{
					Principal: authz.Principal{Kind: authz.KindAgent, Tenant: tenant, User: name, Agent: agent, AuthMethod: "bench"},
					Bucket:    u.Bucket, Admin: u.Admin, Projects: u.Projects, Shared: u.Shared, Blocked: u.Blocked,
					Granted: map[string]bool{},
				}
				grant := mine
				if len(grant) > 1 {
					grant = grant[:len(grant)/2]
				}
				for _, p := range grant {
					a.Granted[p] = true
					add(del, "granted", "project:"+p)
				}
				o.Viewers = append(o.Viewers, a)
			}
		}
	}
	return o
}

// Queries returns n query texts drawn from the corpus vocabulary.
func (o *Org) Queries(n int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	zipf := rand.NewZipf(rng, 1.1, 8, uint64(len(o.Vocab)-1))
	out := make([]string, n)
	for i := range out {
		out[i] = sentence(rng, zipf, o.Vocab, 3+rng.IntN(3))
	}
	return out
}

func sample(rng *rand.Rand, from []string, n int) []string {
	s := slices.Clone(from)
	rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s[:min(n, len(s))]
}

func sentence(rng *rand.Rand, zipf *rand.Zipf, vocab []string, words int) string {
	var b strings.Builder
	for i := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		// Mix frequent words (zipf) with uniformly drawn rare ones.
		if rng.IntN(3) == 0 {
			b.WriteString(vocab[rng.IntN(len(vocab))])
		} else {
			b.WriteString(vocab[zipf.Uint64()])
		}
	}
	return b.String()
}

// vocabulary is a ticket-flavoured word list: common words first (the Zipf head),
// then components, symptoms and identifiers that make tickets distinguishable.
func vocabulary() []string {
	common := strings.Fields(`the a to is in on for when after with not and error user
		request page service login fails timeout issue customer report update deploy
		release data api server client database cache queue job build test config`)
	components := strings.Fields(`checkout payments invoices billing ledger gateway auth
		oauth session cookie webhook scheduler cron importer exporter search indexer
		reporting dashboard analytics mobile android ios desktop browser safari chrome
		firefox kubernetes helm terraform postgres redis kafka rabbitmq nginx envoy
		grafana prometheus alertmanager sentry pagerduty slack email smtp sms push
		notifications onboarding signup password reset mfa totp sso saml ldap scim
		audit export csv pdf upload download attachments thumbnails images video
		storage s3 bucket cdn dns certificate tls ssl proxy loadbalancer firewall vpn`)
	symptoms := strings.Fields(`crash hang slow latency spike leak memory cpu disk full
		deadlock race corrupt missing duplicate stale wrong encoding unicode overflow
		regression flaky intermittent outage degraded 500 502 503 504 404 401 403 429
		rollback hotfix patch migration schema index vacuum replication failover backup
		restore retention gdpr pii consent refund chargeback dispute payroll salary
		bonus headcount hiring offer contract renewal invoice overdue tax vat currency`)
	var ids []string
	for i := range 400 {
		ids = append(ids, fmt.Sprintf("err%04d", 1000+i*7), fmt.Sprintf("cust%03d", i))
	}
	return slices.Concat(common, components, symptoms, ids)
}
