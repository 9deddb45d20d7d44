// Package audit records every authorization decision clearance makes on a read path
// (search, ticket fetch, MCP call) as a durable, hash-chained record, so operators can
// answer "what did this agent receive for this user, what was withheld and why" and
// prove the log was not edited.
package audit

import (
	"context"
	"time"

	"github.com/clearance-dev/clearance/authz"
)

// Decision of one candidate.
type Decision string

const (
	// Returned: allowed by the post-filter and part of the answer.
	Returned Decision = "returned"
	// DeniedByCheck: the post-filter (BatchCheck) said no.
	DeniedByCheck Decision = "denied_by_check"
	// BeyondK: allowed but not needed (the answer already had k results).
	BeyondK Decision = "beyond_k"
	// Allowed: an arm's candidate of a hybrid search that the check allowed;
	// the fused entry of the same chunk (Arm "fused") says whether it was
	// returned or beyond k.
	Allowed Decision = "allowed"
	// NotChecked: fetched from the store but not checked (budget or dedup).
	NotChecked Decision = "not_checked"
	// FlowSource: a source ticket of a flow check (kind "flow_check"): content
	// derived from it was to be written somewhere.
	FlowSource Decision = "flow_source"
	// FlowDestination: the ticket a flow check's content was to be written to.
	FlowDestination Decision = "flow_destination"
)

// Candidate is one store hit the planner considered. Never contains ticket text.
type Candidate struct {
	TicketID string   `json:"ticket_id"`
	Project  string   `json:"project"`
	Chunk    int      `json:"chunk"`
	Score    float32  `json:"score"`
	Decision Decision `json:"decision"`
	// Arm names the ranking the candidate came from in a hybrid search
	// ("vector" or "lexical"; a chunk both found appears once per arm), and
	// "fused" for the fused ranking's entries. Empty in single-arm searches.
	Arm string `json:"arm,omitempty"`
}

// Plan describes how the pre-filter was built and how the search ran.
type Plan struct {
	// Mode is the search mode ("vector", "lexical", "hybrid"); empty in
	// records written before modes existed and in non-search records.
	Mode string `json:"mode,omitempty"`
	// Path: "tenant_admin", "prefilter", "postfilter_only" (ListObjects cut short)
	// or "empty" (nothing visible after narrowing).
	Path string `json:"path"`
	// AllowedProjects counts the projects the engine listed for the
	// principal after narrowing. Project ids are global: a role in another
	// tenant's project counts too; the store filter carries the record's
	// tenant, so such a project yields nothing.
	AllowedProjects int  `json:"allowed_projects"`
	DirectTickets   int  `json:"direct_tickets"`
	Truncated       bool `json:"truncated,omitempty"`
	CacheHit        bool `json:"cache_hit,omitempty"`
	// Revision is the engine revision the pre-filter cache (or, for a flow
	// check, the kept listings) was keyed by: "changelog:N" follows OpenFGA's change log, shared by every replica;
	// "process:N" counts this process's writes (a datastore only it opens).
	Revision string `json:"revision,omitempty"`
	// CacheTTL is set instead when the engine has no revision: a cached
	// pre-filter may be this old (the post-filter still decides).
	CacheTTL string `json:"cache_ttl,omitempty"`
	Rounds   int    `json:"rounds"`
	Fetched  int    `json:"fetched"`
	Checked  int    `json:"checked"`
	Denied   int    `json:"denied"`
	// CachedDecisions of the Checked tickets were answered by the decision
	// cache: the engine's answer at the same revision (Revision), still valid
	// at the request's time.
	CachedDecisions int `json:"cached_decisions,omitempty"`
	// StorePlans names the vector store's plans of this search's pages, in the
	// order first used ("exact", "hnsw").
	StorePlans []string `json:"store_plans,omitempty"`
	// Exact is false when a page came from an approximate store plan (the
	// status is then never complete or exhausted); nil where no store was read.
	Exact *bool    `json:"exact,omitempty"`
	Notes []string `json:"notes,omitempty"`
}

// Narrowing records every restriction applied on top of the engine's answer.
type Narrowing struct {
	TokenProjects   []string `json:"token_projects,omitempty"`
	IntentProjects  []string `json:"intent_projects,omitempty"`
	FilterProjects  []string `json:"filter_projects,omitempty"`
	IntentText      string   `json:"intent,omitempty"`
	DroppedProjects int      `json:"dropped_projects,omitempty"`
}

// Record is one decision: one search, ticket fetch or MCP call.
type Record struct {
	ID          string           `json:"id"` // sortable (ULID)
	Time        time.Time        `json:"time"`
	Kind        string           `json:"kind"` // "search", "ticket", "mcp_search", "mcp_ticket", "flow_check"
	Tenant      string           `json:"tenant"`
	Principal   authz.Principal  `json:"principal"`
	RequestID   string           `json:"request_id,omitempty"`
	Query       string           `json:"query,omitempty"`      // text, unless hashing is configured
	QueryHash   string           `json:"query_hash,omitempty"` // sha256 hex of the query
	TopK        int              `json:"top_k,omitempty"`
	Narrowing   Narrowing        `json:"narrowing"`
	Plan        Plan             `json:"plan"`
	Results     []Candidate      `json:"candidates"`
	Status      string           `json:"status"` // complete | exhausted | partial | error
	Error       string           `json:"error,omitempty"`
	ModelID     string           `json:"model_id"`
	Consistency string           `json:"consistency"`
	Latency     map[string]int64 `json:"latency_us"` // stage -> microseconds
	// TraceID is the W3C trace id (32 hex digits) of the request that made the
	// decision, when it was traced: the way from a record to its spans. It is
	// hashed like every other field; records without it encode as before.
	TraceID string `json:"trace_id,omitempty"`
	// Grants are the delegation changes of a "grant" or "revoke" record.
	Grants []GrantChange `json:"grants,omitempty"`
	// Flow is the decision of a "flow_check" record. Its source and destination
	// tickets are candidates (FlowSource, FlowDestination), so readers filter and
	// withhold them like any other ticket; its reasons are Plan.Notes.
	Flow *FlowDecision `json:"flow,omitempty"`
	// Redacted is response-only: how many ticket references (candidates, and ids
	// in notes or the error) the reader was not shown because it may not view
	// those tickets (api.AuditReader, for tenant admins). Writers leave it zero,
	// so it is never stored and never hashed: omitempty keeps the encoded record,
	// and with it the chain, exactly as before.
	Redacted int `json:"redacted,omitempty"`
	// Chain fields (Hash must stay the last field: the log appends it to the
	// encoded record)., set by the log when the record is appended.
	PrevHash string `json:"prev_hash,omitempty"`
	Hash     string `json:"hash,omitempty"`
}

// GrantChange is one delegation granted or revoked: User lets Agent read Project.
type GrantChange struct {
	User      string     `json:"user"`
	Agent     string     `json:"agent"`
	Project   string     `json:"project"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// FlowDecision is what a flow check decided: may content derived from the
// sources go to the destination? It holds counts and the caller's own record ids,
// never the names of principals.
type FlowDecision struct {
	Allowed bool `json:"allowed"`
	// SourceAuditIDs are the caller's earlier records the sources came from.
	SourceAuditIDs []string `json:"source_audit_ids,omitempty"`
	// SourceTickets counts the distinct source tickets.
	SourceTickets int `json:"source_tickets"`
	// Destination is "project:<id>", "ticket" (the ticket is a FlowDestination
	// candidate) or "principals".
	Destination string `json:"destination"`
	// Recipients counts the principals of a "principals" destination.
	Recipients int `json:"recipients,omitempty"`
	// Audience counts the principals who can view the destination; Excluded,
	// those of them who cannot view every source.
	Audience int `json:"audience"`
	Excluded int `json:"excluded"`
	// Explained: the answer named the excluded principals (explain=true).
	Explained bool `json:"explained,omitempty"`
}

// FlushObserver is told about each group-commit write of a backend: how many
// records it made durable, how long the write took and its error (metrics).
type FlushObserver func(records int, took time.Duration, err error)

// Log stores records. Append must be durable when it returns (or fail, and then the
// caller fails closed).
type Log interface {
	Append(ctx context.Context, r *Record) error
}
