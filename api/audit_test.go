package api

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/audit/audittest"
	"github.com/clearance-dev/clearance/audit/filelog"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/embedded"
)

// auditFixture is a real file log with records of two tenants and a real embedded
// engine in which alice administers acme and gina administers globex. Each
// tenant's tickets T-<tenant>-<i> are in its project p-<tenant>; T-secret, a
// candidate in every record, is a globex ticket, so alice never sees its id.
type auditFixture struct {
	log    *filelog.Log
	engine *embedded.Engine
	acme   []*audit.Record
	globex []*audit.Record
}

// openFileLog is a durable audit log in a temporary directory, closed at the end.
func openFileLog(t *testing.T) *filelog.Log {
	t.Helper()
	l, err := filelog.Open(context.Background(), filelog.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func newAuditFixture(t *testing.T) *auditFixture {
	t.Helper()
	ctx := context.Background()
	l := openFileLog(t)
	e, err := embedded.New(ctx, embedded.Config{Datastore: embedded.Memory})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if err := e.Write(ctx, []authz.Tuple{
		{User: "user:alice", Relation: "admin", Object: "tenant:acme"},
		{User: "user:gina", Relation: "admin", Object: "tenant:globex"},
		{User: "user:bob", Relation: "member", Object: "tenant:acme"},
		{User: "tenant:acme", Relation: "tenant", Object: "project:p-acme"},
		{User: "tenant:globex", Relation: "tenant", Object: "project:p-globex"},
		{User: "project:p-globex", Relation: "project", Object: "ticket:T-secret"},
	}, nil); err != nil {
		t.Fatal(err)
	}
	f := &auditFixture{log: l, engine: e}
	for i := range 3 {
		for _, tenant := range []string{"acme", "globex"} {
			ticket := fmt.Sprintf("T-%s-%d", tenant, i)
			if err := e.Write(ctx, []authz.Tuple{{User: "project:p-" + tenant, Relation: "project", Object: "ticket:" + ticket}}, nil); err != nil {
				t.Fatal(err)
			}
			r := audittest.Rec(tenant, fmt.Sprintf("user%d", i), "copilot", ticket, "T-secret")
			if err := l.Append(ctx, r); err != nil {
				t.Fatal(err)
			}
			if tenant == "acme" {
				f.acme = append(f.acme, r)
			} else {
				f.globex = append(f.globex, r)
			}
		}
	}
	return f
}

func user(tenant, sub string, scopes ...string) authz.Principal {
	return authz.Principal{Kind: authz.KindUser, Tenant: tenant, User: sub, AuthMethod: "jwt", Scopes: scopes}
}

// TestAuditReaderAccess is the permission matrix of the audit log: who reads
// what, and that another tenant's record is indistinguishable from a missing one.
func TestAuditReaderAccess(t *testing.T) {
	f := newAuditFixture(t)
	a := &AuditReader{Log: f.log, Engine: f.engine}
	ctx := context.Background()
	operator := user("ops", "olga", ScopeAudit)
	alice := user("acme", "alice")
	agent := authz.Principal{Kind: authz.KindAgent, Tenant: "acme", User: "alice", Agent: "copilot", Scopes: []string{ScopeAudit}}
	sa := authz.Principal{Kind: authz.KindServiceAccount, Tenant: "acme", ServiceAccount: "ci", Scopes: []string{ScopeAudit}}

	cases := []struct {
		name    string
		p       authz.Principal
		f       audit.Filter
		want    int
		wantErr error
		tenant  string // every record must be of this tenant
	}{
		{name: "operator sees all", p: operator, want: 6},
		{name: "operator filters a tenant", p: operator, f: audit.Filter{Tenant: "globex"}, want: 3, tenant: "globex"},
		{name: "tenant admin forced to own tenant", p: alice, want: 3, tenant: "acme"},
		{name: "tenant admin naming own tenant", p: alice, f: audit.Filter{Tenant: "acme"}, want: 3, tenant: "acme"},
		{name: "tenant admin asking for another tenant", p: alice, f: audit.Filter{Tenant: "globex"}, wantErr: clearance.ErrForbidden},
		{name: "admin of another tenant's token", p: user("acme", "gina"), wantErr: clearance.ErrForbidden},
		{name: "member is not admin", p: user("acme", "bob"), wantErr: clearance.ErrForbidden},
		{name: "agent even with the scope", p: agent, wantErr: clearance.ErrForbidden},
		{name: "service account even with the scope", p: sa, wantErr: clearance.ErrForbidden},
	}
	for _, tc := range cases {
		page, err := a.List(ctx, tc.p, tc.f)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if len(page.Records) != tc.want {
			t.Errorf("%s: %d records, want %d", tc.name, len(page.Records), tc.want)
		}
		for _, r := range page.Records {
			if tc.tenant != "" && r.Tenant != tc.tenant {
				t.Errorf("%s: got a record of tenant %s", tc.name, r.Tenant)
			}
		}
	}

	// By id: own tenant yes; another tenant's answers exactly like a missing id.
	if r, err := a.Get(ctx, alice, f.acme[1].ID); err != nil || r.ID != f.acme[1].ID {
		t.Fatalf("alice reads an acme record: %v", err)
	}
	_, errOther := a.Get(ctx, alice, f.globex[1].ID)
	missing := "01ARZ3NDEKTSV4RRFFQ69G5FAV"
	_, errMissing := a.Get(ctx, alice, missing)
	if !errors.Is(errOther, clearance.ErrNotFound) || !errors.Is(errMissing, clearance.ErrNotFound) {
		t.Fatalf("another tenant's record: %v; a missing one: %v; want both not found", errOther, errMissing)
	}
	if got, want := errOther.Error(), fmt.Sprintf("audit record %q: not found", f.globex[1].ID); got != want {
		t.Fatalf("another tenant's record says %q, want the missing-record message %q", got, want)
	}
	if _, err := a.Get(ctx, operator, f.globex[1].ID); err != nil {
		t.Fatalf("operator reads a globex record: %v", err)
	}
	if _, err := a.Get(ctx, user("acme", "bob"), f.acme[0].ID); !errors.Is(err, clearance.ErrForbidden) {
		t.Fatalf("member reads by id: %v, want forbidden", err)
	}
}

// brokenEngine fails every call: the admin check must fail closed.
type brokenEngine struct{ authz.Engine }

func (brokenEngine) Check(context.Context, authz.Query, authz.Check) (bool, error) {
	return false, authz.ErrUnavailable
}

func TestAuditReaderEngineDownFailsClosed(t *testing.T) {
	f := newAuditFixture(t)
	a := &AuditReader{Log: f.log, Engine: brokenEngine{}}
	_, err := a.List(context.Background(), user("acme", "alice"), audit.Filter{})
	if !errors.Is(err, clearance.ErrUnavailable) {
		t.Fatalf("list with the engine down: %v, want ErrUnavailable", err)
	}
	if _, err := a.Get(context.Background(), user("acme", "alice"), f.acme[0].ID); !errors.Is(err, clearance.ErrUnavailable) {
		t.Fatalf("get with the engine down: %v, want ErrUnavailable", err)
	}
}

func TestParseAuditFilter(t *testing.T) {
	good := url.Values{"tenant": {"acme"}, "since": {"2026-11-01T10:00:00Z"}, "until": {"2026-11-02T10:00"}, "limit": {"20"}}
	f, err := parseAuditFilter(good)
	if err != nil {
		t.Fatal(err)
	}
	if f.Tenant != "acme" || f.Limit != 20 || !f.Since.Equal(time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)) || !f.Until.Equal(time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("parsed %+v", f)
	}
	for _, bad := range []struct {
		q     url.Values
		field string
	}{
		{url.Values{"tenantt": {"x"}}, "tenantt"},
		{url.Values{"since": {"yesterday"}}, "since"},
		{url.Values{"limit": {"ten"}}, "limit"},
		{url.Values{"limit": {"100000"}}, "limit"},
		{url.Values{"cursor": {"nope"}}, "cursor"},
	} {
		_, err := parseAuditFilter(bad.q)
		var fe *clearance.FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%v: %v, want a field error", bad.q, err)
			continue
		}
		if bad.field != "" && fe.Field != bad.field {
			t.Errorf("%v: field %q, want %q", bad.q, fe.Field, bad.field)
		}
	}
}

// TestAuditGrants: a grant event becomes a chained record the audit reader shows
// to the tenant's admin.
func TestAuditGrants(t *testing.T) {
	f := newAuditFixture(t)
	exp := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	by := user("acme", "anne", "tickets:read")
	ev := GrantEvent{Time: time.Now(), Action: "grant", By: by, Grants: []Grant{{User: "anne", Agent: "copilot", Project: "apollo", ExpiresAt: &exp}}}
	if err := (&AuditGrants{Log: f.log}).RecordGrant(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	page, err := (&AuditReader{Log: f.log, Engine: f.engine}).List(context.Background(), user("acme", "alice"), audit.Filter{Principal: "anne"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 1 || page.Records[0].Kind != "grant" || len(page.Records[0].Grants) != 1 ||
		page.Records[0].Grants[0].Project != "apollo" || !page.Records[0].Grants[0].ExpiresAt.Equal(exp) {
		t.Fatalf("grant records: %+v", page.Records)
	}
	if rep, err := f.log.Verify(context.Background()); err != nil || !rep.OK() {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}
