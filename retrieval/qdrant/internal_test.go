package qdrant

import (
	"errors"
	"regexp"
	"testing"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/retrieval"
)

// These run without a server: the pure parts of the adapter.

func TestPointIDsAreStableDistinctUUIDs(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]string{}
	for _, tc := range []struct {
		name string
		id   string
	}{
		{"T-1/0", chunkID("T-1", 0).GetUuid()},
		{"T-1/1", chunkID("T-1", 1).GetUuid()},
		{"T-11/0", chunkID("T-11", 0).GetUuid()},
		{"T-1 ticket", ticketID("T-1").GetUuid()},
		{"meta", metaID().GetUuid()},
	} {
		if !uuid.MatchString(tc.id) {
			t.Fatalf("%s: %q is not a version-5 UUID", tc.name, tc.id)
		}
		if other, dup := seen[tc.id]; dup {
			t.Fatalf("%s and %s share id %s", tc.name, other, tc.id)
		}
		seen[tc.id] = tc.name
	}
	again := chunkID("T-1", 0)
	if again.GetUuid() != seenID(seen, "T-1/0") {
		t.Fatal("point ids are not deterministic")
	}
}

func seenID(seen map[string]string, name string) string {
	for id, n := range seen {
		if n == name {
			return id
		}
	}
	return ""
}

func TestFilterTranslation(t *testing.T) {
	f := filter(retrieval.Filter{Tenant: "acme", Projects: []string{"p1", "p2"}, Tickets: []string{"T-9"}})
	if len(f.Must) != 1 || f.Must[0].GetField().GetKey() != keyTenant || f.Must[0].GetField().GetMatch().GetKeyword() != "acme" {
		t.Fatalf("must = %v, want tenant = acme", f.Must)
	}
	if len(f.Should) != 2 ||
		f.Should[0].GetField().GetKey() != keyProject || len(f.Should[0].GetField().GetMatch().GetKeywords().GetStrings()) != 2 ||
		f.Should[1].GetField().GetKey() != keyTicket || f.Should[1].GetField().GetMatch().GetKeywords().GetStrings()[0] != "T-9" {
		t.Fatalf("should = %v, want project in [p1 p2], ticket in [T-9]", f.Should)
	}
	all := filter(retrieval.Filter{Tenant: "acme", AllProjects: true, Projects: []string{"p1"}})
	if len(all.Must) != 1 || len(all.Should) != 0 {
		t.Fatalf("AllProjects filter = %v, want tenant only", all)
	}
	only := filter(retrieval.Filter{Tenant: "acme", Tickets: []string{"T-1"}})
	if len(only.Should) != 1 || only.Should[0].GetField().GetKey() != keyTicket {
		t.Fatalf("tickets-only filter = %v: an empty project list must not be sent", only)
	}
}

func TestClientConfig(t *testing.T) {
	for _, tc := range []struct {
		url  string
		host string
		port int
		tls  bool
	}{
		{"localhost:6334", "localhost", 6334, false},
		{"qdrant.internal", "qdrant.internal", 6334, false},
		{"http://10.0.0.5:7000", "10.0.0.5", 7000, false},
		{"https://xyz.cloud.qdrant.io:6334", "xyz.cloud.qdrant.io", 6334, true},
	} {
		c, err := clientConfig(Config{URL: tc.url})
		if err != nil || c.Host != tc.host || c.Port != tc.port || c.UseTLS != tc.tls {
			t.Fatalf("%s: %+v, %v", tc.url, c, err)
		}
	}
	for _, bad := range []string{"", "ftp://x:1", "host:notaport", ":6334"} {
		if _, err := clientConfig(Config{URL: bad}); !errors.Is(err, clearance.ErrInvalid) {
			t.Fatalf("%q: err = %v, want ErrInvalid", bad, err)
		}
	}
}
