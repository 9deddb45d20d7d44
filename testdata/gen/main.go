// Command gen writes testdata/tickets.jsonl, the demo org's tickets: about 200
// hand-titled tickets across two tenants whose bodies are assembled from
// kind-specific paragraphs (bug reports, incident timelines, feature requests,
// security findings, HR and finance items) filled with each ticket's own service
// names, error codes and customers, so lexical and semantic search both have
// something distinctive to find. The output is deterministic.
//
//	go run ./testdata/gen > testdata/tickets.jsonl
//
// With -bench-tickets N it writes instead the first N tickets of the bench
// generator's org (internal/bench, seed 42, two 40-word chunks per ticket), for
// load measurements of `clearance index` at scale:
//
//	go run ./testdata/gen -bench-tickets 100000 > /tmp/tickets100k.jsonl
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/clearance-dev/clearance/internal/bench"
)

type kind int

const (
	bug kind = iota
	incident
	feature
	security
	hr
	finance
	docs
	billing
	ops
)

// spec is one hand-written ticket: its title, kind and the rare words its body
// is built around (service, error code, customer or counterpart, and a note).
type spec struct {
	title string
	kind  kind
	svc   string
	code  string
	cust  string
	note  string
}

type project struct {
	tenant, id, prefix string
	tickets            []spec
}

type ticket struct {
	ID        string `json:"id"`
	Tenant    string `json:"tenant"`
	Project   string `json:"project"`
	Title     string `json:"title"`
	Body      string `json:"body"`
	UpdatedAt string `json:"updated_at"`
	Deleted   bool   `json:"deleted"`
}

func main() {
	benchTickets := flag.Int("bench-tickets", 0, "write this many tickets of the bench generator's org instead of the demo tickets")
	flag.Parse()
	w := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if *benchTickets > 0 {
		cfg := bench.DefaultOrgConfig(2 * *benchTickets)
		cfg.Seed = 42
		for _, t := range bench.GenerateOrg(cfg).Tickets {
			if err := enc.Encode(ticket{ID: t.ID, Tenant: t.Tenant, Project: t.Project, Title: t.Title,
				Body: t.Body, UpdatedAt: t.UpdatedAt.Format(time.RFC3339)}); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		if err := w.Flush(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	rng := rand.New(rand.NewPCG(42, 2026))
	start := time.Date(2026, 8, 1, 9, 0, 0, 0, time.UTC)
	for _, p := range projects {
		for i, s := range p.tickets {
			t := ticket{
				ID:        fmt.Sprintf("%s-%d", p.prefix, i+1),
				Tenant:    p.tenant,
				Project:   p.id,
				Title:     s.title,
				Body:      body(rng, p, s),
				UpdatedAt: start.Add(time.Duration(rng.IntN(110*24*60)) * time.Minute).Format(time.RFC3339),
			}
			if err := enc.Encode(t); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

var (
	people   = []string{"Priya Raman", "Tomás Ferreira", "Mei Chen", "Jonas Albrecht", "Aisha Okafor", "Luca Moretti", "Sofia Lindqvist", "Daniel Kim", "Fatima Haddad", "Oliver Grant", "Nadia Petrova", "Kenji Watanabe", "Marta Nowak", "Samuel Adeyemi"}
	envs     = []string{"production", "production (eu-west-1)", "production (us-east-2)", "staging", "the canary pool", "production (ap-southeast-1)"}
	versions = []string{"2026.9.2", "2026.10.1", "2026.10.3", "2026.10.4", "2026.11.0", "2026.11.2"}
	browsers = []string{"Chrome 131 on Windows 11", "Safari 18 on macOS Sequoia", "Firefox 133", "Edge 131", "Safari on iOS 18.1", "Chrome on Android 15"}
)

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

// body assembles a ticket body from paragraphs of its kind.
func body(rng *rand.Rand, p project, s spec) string {
	r := strings.NewReplacer(
		"{svc}", s.svc,
		"{Subject}", s.title,
		"{code}", s.code,
		"{cust}", s.cust,
		"{subject}", lowerFirst(s.title),
		"{who}", pick(rng, people),
		"{who2}", pick(rng, people),
		"{env}", pick(rng, envs),
		"{ver}", pick(rng, versions),
		"{browser}", pick(rng, browsers),
		"{n}", fmt.Sprint(3+rng.IntN(60)),
		"{pct}", fmt.Sprint(2+rng.IntN(38)),
		"{amount}", fmt.Sprintf("%d,%03d", 2+rng.IntN(180), rng.IntN(1000)),
		"{tenant}", titleCase(p.tenant),
		"{project}", p.id,
	)
	parts := kinds[s.kind]
	var paras []string
	paras = append(paras, pick(rng, parts.open))
	if s.note != "" {
		paras = append(paras, s.note)
	}
	if s.kind == incident {
		paras = append(paras, timeline(rng))
	}
	// Two or three detail paragraphs, distinct.
	for _, i := range rng.Perm(len(parts.detail))[:2+rng.IntN(2)] {
		paras = append(paras, parts.detail[i])
	}
	paras = append(paras, pick(rng, parts.close))
	return r.Replace(strings.Join(paras, "\n\n"))
}

func timeline(rng *rand.Rand) string {
	h, m := 1+rng.IntN(20), rng.IntN(50)
	at := func(add int) string {
		t := h*60 + m + add
		return fmt.Sprintf("%02d:%02d", (t/60)%24, t%60)
	}
	d1, d2, d3 := 2+rng.IntN(8), 10+rng.IntN(15), 30+rng.IntN(60)
	return fmt.Sprintf("Timeline (UTC):\n- %s first alert from {svc} ({code}) fired in {env}.\n- %s on-call ({who}) acknowledged and opened a bridge.\n- %s mitigation applied; error rate started to fall.\n- %s all clear declared; monitoring continued for another hour.",
		at(0), at(d1), at(d2), at(d3))
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	// Keep acronyms ("SSO", "API") as they are.
	if len(s) > 1 && strings.ToUpper(s[:2]) == s[:2] {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

func titleCase(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

type paragraphs struct{ open, detail, close []string }

var kinds = map[kind]paragraphs{
	bug: {
		open: []string{
			"Reported by {who} after a customer escalation from {cust}: {subject}. It reproduces in {env} on release {ver}; {svc} logs {code} every time.",
			"Seen in {env} since release {ver}. {Subject}. The failing component is {svc} and the error surfaced to users is {code}. {cust} raised it first.",
			"{cust} opened a support case this morning: {subject}. {who} reproduced it on {browser} against {env}; the trace ends in {svc} with {code}.",
			"Bug: {subject}. Affects {cust} and at least {n} other accounts. {svc} returns {code}; nothing changed on our side except the {ver} rollout.",
		},
		detail: []string{
			"Steps to reproduce: sign in as a test user, open the affected page, wait for the request to {svc} to finish, and repeat once more. The second attempt fails roughly {pct}% of the time, which is why the smoke tests missed it.",
			"The logs show the request reaching {svc} and then nothing for several seconds before {code} is written. Retries make it worse because each retry starts a new session instead of reusing the existing one.",
			"Workaround for support: ask the customer to clear cookies and try again in a private window. This is not a fix, and it does not help users behind the corporate proxy at {cust}.",
			"Suspect the change in {ver} that moved configuration into the shared library. {who2} thinks the default timeout there is shorter than the one {svc} used before.",
			"Frequency: {n} occurrences in the last 24 hours according to the error tracker, up from almost none last week. No correlation with region, some correlation with large accounts.",
			"Tested on {browser} and two other browsers; same result everywhere, so it is unlikely to be a client-side quirk.",
			"Attached: HAR file, the request id from the failing call and a screenshot of the error banner. Please do not paste customer data from the HAR into this ticket.",
		},
		close: []string{
			"Priority: high while {cust} is blocked. Owner: {who2}.",
			"Next step: add a regression test around {svc} before touching the fix.",
			"Please keep {cust} updated through their account manager; they asked for a daily note.",
			"Marking as P2. If the rate goes above {pct}% we page the owning team.",
		},
	},
	incident: {
		open: []string{
			"Incident summary: {subject}. Impact started in {env} and affected {cust}. Severity 2, declared by {who}.",
			"Postmortem draft for the incident where {subject}. Root cause sits in {svc}; the user-facing symptom was {code}.",
			"SEV-1: {subject}. Customers affected: {cust}. Incident commander: {who}; communications: {who2}.",
		},
		detail: []string{
			"Root cause: a configuration change shipped with {ver} reduced a connection pool in {svc} from 200 to {n}. Under normal traffic this went unnoticed; the evening peak exhausted it within minutes.",
			"What went well: alerting fired within two minutes and the runbook for {svc} was current. What went badly: the status page was updated late, and the first mitigation (a restart) hid the real cause.",
			"Customer impact: about {pct}% of requests failed during the window. Support received {n} tickets, most of them from {cust}. No data was lost; some writes were retried by clients.",
			"Action items: add a load test that runs the peak profile against {svc}; alert on saturation rather than errors; make config changes to pool sizes require a second reviewer.",
			"Detection gap: the synthetic check only exercised the happy path and kept passing while real users saw {code}. We will add a check that signs in and performs a write.",
		},
		close: []string{
			"Postmortem review scheduled for Thursday. All action items need an owner by then.",
			"Status: resolved, postmortem pending. Blameless review with the {svc} owners next week.",
			"Follow-ups are linked as child tickets. Closing once the last action item ships.",
		},
	},
	feature: {
		open: []string{
			"Feature request from {cust}: {subject}. They asked for it in the last quarterly review and it came up again in {n} support conversations.",
			"Proposal ({who}): {subject}. This would touch {svc} and the settings screens; no schema migration expected.",
			"Customer ask, collected by {who}: {subject}. Three enterprise prospects listed this as a blocker in their security questionnaires.",
		},
		detail: []string{
			"Acceptance criteria: the option is off by default, can be enabled per account by an admin, is covered by the public API, and shows up in the audit trail when changed.",
			"Design notes: reuse the existing component in {svc} rather than building a new one. {who2} sketched a version that needs only one new endpoint and one new table.",
			"Open questions: does it need to work for guest users? Should it respect the data retention settings? How do we price it, if at all?",
			"Effort estimate: roughly {n} engineer-days including tests and docs. Could ship behind a flag in {ver} or the release after.",
			"Competitors already offer something similar; the sales team shared two screenshots. We should do it in a way that fits our own navigation, not copy theirs.",
		},
		close: []string{
			"Product decision needed by the end of the month. Tagging {who2} for prioritisation.",
			"Not committed yet; collecting more customer input before we size it properly.",
			"Accepted for next quarter's roadmap, pending design review.",
		},
	},
	security: {
		open: []string{
			"Security finding (confidential): {subject}. Found by {who} during the internal review of {svc}. Tracking id {code}.",
			"Report from the external penetration test: {subject}. Component: {svc}. Reference {code}. Do not discuss outside the security channel.",
			"Vulnerability report: {subject}. Affected: {svc} in {env}. Internal reference {code}; reporter credited as {cust}.",
		},
		detail: []string{
			"Severity assessment: CVSS 3.1 base score around 8.1 (network, low complexity, no user interaction). Exploitable by any authenticated user; no evidence of exploitation so far in the access logs.",
			"Containment: the affected route in {svc} is disabled behind a feature flag since this morning. {who2} is reviewing the last {n} days of logs for indicators of compromise.",
			"Remediation plan: fix the input validation, add a regression test, rotate any credential the component could have exposed, and re-run the scanner against {env}.",
			"Disclosure: if customer data was accessed we have 72 hours to notify under our contracts. Legal and the DPO are informed and waiting for the log review.",
			"Root cause is an old code path nobody owned. It should have been removed with the v1 API; the dependency inventory still listed it as active.",
		},
		close: []string{
			"Restricted to the security team and {who2}. Target fix date: end of this week.",
			"Keep this ticket in the secret project; link only the sanitized public ticket elsewhere.",
			"Status: remediation in progress, verification scan scheduled.",
		},
	},
	hr: {
		open: []string{
			"Confidential HR matter: {subject}. Owner: {who} (People team). Only HR business partners and the relevant managers may read this.",
			"{Subject}. Opened by {who} on behalf of the department head. Contains personal information: handle according to the HR data policy.",
			"People operations: {subject}. Context and decisions are recorded here; the employee-facing communication goes out separately.",
		},
		detail: []string{
			"Background: the case concerns a team of {n} people. Relevant documents (contracts, prior reviews, written statements) are stored in the HR system, not attached here.",
			"Next steps: the manager meets with {who2} this week, notes are shared with the HR business partner within 24 hours, and a decision is documented before the end of the month.",
			"Budget impact: an increase of about {pct}% against the current plan for the affected group, to be confirmed with finance before anything is communicated.",
			"Legal review: counsel confirmed the process follows local employment law. Timelines in the policy must be respected exactly; missing one restarts the process.",
			"Confidentiality: do not discuss in public channels. If someone outside the People team asks about it, refer them to {who}.",
		},
		close: []string{
			"Status: in progress. Review date set by {who}.",
			"Decision pending; the next update will be added after the meeting.",
			"Closed to everyone except HR and the department head.",
		},
	},
	finance: {
		open: []string{
			"Finance: {subject}. Counterparty: {cust}. Amount in question: EUR {amount}. Owner: {who}.",
			"{Subject}. Raised by {who} in accounts payable; the ledger reference is {code}.",
			"Finance operations item: {subject}. Related to {cust}; {who} is the point of contact.",
		},
		detail: []string{
			"The amount of EUR {amount} sits in the suspense account until the dispute is resolved. Month-end close can proceed, but the item must be disclosed in the close memo.",
			"Supporting documents: purchase order, signed contract, the invoice and the delivery confirmation. The contract allows adjustments only with written notice, which we never received.",
			"Budget owner approval is required above EUR 50,000. {who2} has approved in principle; the CFO signs off on Friday.",
			"Reconciliation shows {n} line items that do not match the payment provider's settlement report; most differences are FX rounding, two are real.",
			"Payroll impact: none for employees; contractors paid through the agency are affected and must be informed before the next cycle.",
		},
		close: []string{
			"Target resolution: before the quarter closes. Tagging {who2}.",
			"Status: waiting for the counterparty's reply.",
			"Escalate to the controller if not resolved within ten business days.",
		},
	},
	docs: {
		open: []string{
			"Docs issue: {subject}. Reported by {who} via the feedback widget on the page; {n} thumbs-down votes so far.",
			"Documentation task: {subject}. Affects the {svc} pages on the developer portal.",
			"Reader feedback: {subject}. A developer at {cust} got stuck on this during integration.",
		},
		detail: []string{
			"The page describes behaviour from before release {ver}. The code samples compile but return {code} against the current API.",
			"Proposed change: rewrite the section, add a runnable example, and link the error code reference. {who2} from developer relations will review.",
			"Search analytics show people looking for this topic with no good hit: the top queries mention {code} and {svc}.",
			"The same content exists in three places (guide, reference, FAQ). We should keep one source and link to it from the others.",
		},
		close: []string{
			"Small task; good first issue for the new technical writer.",
			"Docs freeze for the release is on Friday; this should land before then.",
			"Owner: {who2}. Publish after review.",
		},
	},
	billing: {
		open: []string{
			"Billing dispute from {cust}: {subject}. Amount disputed: USD {amount}. Account manager: {who}.",
			"{Subject}. Affects {cust} and {n} other accounts on the same plan. Billing engine component: {svc}.",
			"Billing issue: {subject}. First noticed by {who} in the billing run report; error {code}.",
		},
		detail: []string{
			"The invoice was generated by {svc} from usage data that arrived late. The late records were applied twice, once in the nightly job and once in the correction job.",
			"Customer expectation: a corrected invoice and a credit note, not a refund, so their purchase order stays valid. Their AP contact is cc'd on the case.",
			"Check the dunning settings: the account was moved to a payment plan, but the late fee rule still fired because the plan flag is read from the old field.",
			"Impact across accounts: {n} invoices in the last run show the same pattern; total over-billing of about USD {amount}.",
			"Tax: the jurisdiction lookup used the billing address instead of the service address, so the wrong rate applied on {pct}% of line items.",
		},
		close: []string{
			"Please resolve before the next billing run on the 1st.",
			"Owner: {who2}. Keep the customer informed through their portal case.",
			"Credit note approved; waiting for engineering to fix the root cause.",
		},
	},
	ops: {
		open: []string{
			"Ops: {subject}. Cluster/component: {svc}. Raised by {who} from the on-call handover.",
			"{Subject}. Seen in {env}; the alert is {code}. On-call noted it {n} times this month.",
			"Operations task: {subject}. Owner: {who}; reviewer: {who2}.",
		},
		detail: []string{
			"Plan: drain one node at a time, apply the change, watch the dashboards for fifteen minutes, then continue. Rollback is a single revert of the infrastructure change.",
			"Current state: {pct}% of capacity used at peak. At the current growth rate we run out of headroom in about {n} weeks.",
			"The runbook for {svc} is out of date: it references hosts that were decommissioned. Update it as part of this ticket.",
			"Cost: the change should save roughly USD {amount} per month after the migration completes.",
			"Change window: Tuesday 06:00-08:00 UTC, announced on the status page 48 hours ahead.",
		},
		close: []string{
			"Needs change approval before execution.",
			"Done when the alert stays quiet for a full week.",
			"Track follow-ups in the ops backlog.",
		},
	},
}
