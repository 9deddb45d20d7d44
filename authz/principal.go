package authz

import (
	"slices"
	"strings"
)

// PrincipalKind says who is asking.
type PrincipalKind string

const (
	// KindUser is a person acting for themselves.
	KindUser PrincipalKind = "user"
	// KindAgent is an agent acting for a user (token sub = user, act.sub = agent).
	KindAgent PrincipalKind = "agent"
	// KindServiceAccount is a tenant's service account authenticated by API key.
	KindServiceAccount PrincipalKind = "service_account"
)

// Relations the model defines for reading.
const (
	RelationCanView      = "can_view"
	RelationAgentCanView = "agent_can_view"
	RelationShared       = "shared"
)

// Narrowing restricts what a principal may see beyond the engine's answer. It can
// only narrow: the effective project set is the intersection of the engine's
// answer with every non-nil narrowing.
type Narrowing struct {
	// Projects from the token's authorization_details (RFC 9396, type
	// ticket_access). Nil means no narrowing; an empty non-nil slice means nothing.
	Projects []string `json:"projects,omitempty"`
	// Actions from authorization_details, recorded for the audit trail.
	Actions []string `json:"actions,omitempty"`
}

// Principal is the verified subject of a request. It comes only from a verified
// credential (token or API key), never from a request body.
type Principal struct {
	Kind   PrincipalKind `json:"kind"`
	Tenant string        `json:"tenant"`
	// User is the token's sub for users and agents.
	User string `json:"user,omitempty"`
	// Agent is the current actor (act.sub) when Kind is KindAgent.
	Agent string `json:"agent,omitempty"`
	// ActorChain holds nested act.sub values beyond the current actor, outermost
	// first, for the audit trail only: they never affect authorization.
	ActorChain []string `json:"actor_chain,omitempty"`
	// ServiceAccount is the service account id when Kind is KindServiceAccount.
	ServiceAccount string `json:"service_account,omitempty"`
	// APIKeyID identifies the API key that authenticated a service account.
	APIKeyID string `json:"api_key_id,omitempty"`
	// KeyMinter is the user (token sub) who minted the API key of a service
	// account, when that user was a tenant admin rather than an operator. The
	// key then sees only what the service account AND this user may view right
	// now (SPEC invariant 9: nothing a principal creates sees more than it can).
	KeyMinter string `json:"key_minter,omitempty"`
	// AuthMethod is "jwt", "api_key" or "dev".
	AuthMethod string `json:"auth_method"`
	// Scopes granted by the credential.
	Scopes []string `json:"scopes,omitempty"`
	// Narrowing from the credential (nil: none).
	Narrowing *Narrowing `json:"narrowing,omitempty"`
}

// Subject is the engine user for this principal: "user:<sub>" for users and agents
// (an agent's access is evaluated on its user), "service_account:<id>" otherwise.
func (p Principal) Subject() string {
	if p.Kind == KindServiceAccount {
		return "service_account:" + p.ServiceAccount
	}
	return "user:" + p.User
}

// ViewRelation is the relation that decides visibility for this principal.
func (p Principal) ViewRelation() string {
	if p.Kind == KindAgent {
		return RelationAgentCanView
	}
	return RelationCanView
}

// ViewChecks are the checks that must all allow for p to view object: the
// principal's own, and for a key minted by a tenant admin also the minter's
// can_view, so a key is never wider than the user who made it.
func (p Principal) ViewChecks(object string) []Check {
	cs := []Check{{User: p.Subject(), Relation: p.ViewRelation(), Object: object}}
	if m, ok := p.Minter(); ok {
		cs = append(cs, Check{User: m.Subject(), Relation: m.ViewRelation(), Object: object})
	}
	return cs
}

// Minter is the user principal that bounds p (a service account whose key a
// tenant admin minted), and whether there is one.
func (p Principal) Minter() (Principal, bool) {
	if p.Kind != KindServiceAccount || p.KeyMinter == "" {
		return Principal{}, false
	}
	return Principal{Kind: KindUser, Tenant: p.Tenant, User: p.KeyMinter}, true
}

// DelegationID is "<user>~<agent>", the delegation object id of an agent principal.
func DelegationID(user, agent string) string { return user + "~" + agent }

// ContextualTuples are the tuples the server adds to every engine call for this
// principal: for an agent, delegation:<user>~<agent>#active@user:<user>, which is
// only ever added after the token was verified and never stored.
func (p Principal) ContextualTuples() []Tuple {
	if p.Kind != KindAgent {
		return nil
	}
	return []Tuple{{
		User:     "user:" + p.User,
		Relation: "active",
		Object:   "delegation:" + DelegationID(p.User, p.Agent),
	}}
}

// HasScope reports whether the credential carries scope s.
func (p Principal) HasScope(s string) bool { return slices.Contains(p.Scopes, s) }

// String is a short description for logs: kind, tenant and ids (no secrets).
func (p Principal) String() string {
	var b strings.Builder
	b.WriteString(string(p.Kind))
	b.WriteString(":")
	b.WriteString(p.Tenant)
	b.WriteString("/")
	switch p.Kind {
	case KindServiceAccount:
		b.WriteString(p.ServiceAccount)
		if p.KeyMinter != "" {
			b.WriteString("(minted by " + p.KeyMinter + ")")
		}
	case KindAgent:
		b.WriteString(p.User + "~" + p.Agent)
	default:
		b.WriteString(p.User)
	}
	return b.String()
}
