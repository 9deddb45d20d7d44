// Package testdata embeds the demo org (tickets.jsonl and org.fga.yaml) so the
// clearance binary can run its demo from any directory. The files are the source of
// truth; this package only makes them available to `clearance demo` and tests.
package testdata

import _ "embed"

// Tickets is the demo org's tickets, one JSON object per line (SPEC section 10).
//
//go:embed tickets.jsonl
var Tickets []byte

// OrgFGA is the demo org's store file (model_file ../authz/model.fga, tuples and
// `fga model test` assertions).
//
//go:embed org.fga.yaml
var OrgFGA []byte
