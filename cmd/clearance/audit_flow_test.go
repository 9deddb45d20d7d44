package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/authz"
)

// TestPrintFlowRecord: a flow_check line says where to and the counts, and its
// source tickets are neither returned nor withheld.
func TestPrintFlowRecord(t *testing.T) {
	r := &audit.Record{ID: "01J", Kind: "flow_check", Tenant: "acme", Status: "denied",
		Principal: authz.Principal{Kind: authz.KindAgent, User: "anne", Agent: "copilot"},
		Results:   []audit.Candidate{{TicketID: "SEC-3", Decision: audit.FlowSource}, {TicketID: "SEC-5", Decision: audit.FlowSource}},
		Flow:      &audit.FlowDecision{Destination: "project:acme-docs", SourceTickets: 2, Audience: 3, Excluded: 2}}
	var b bytes.Buffer
	printRecord(&b, r, false)
	line := b.String()
	for _, want := range []string{"flow_check", "denied", "returned=0 withheld=0", "to=project:acme-docs sources=2 audience=3 excluded=2"} {
		if !strings.Contains(line, want) {
			t.Errorf("line %q lacks %q", line, want)
		}
	}
}
