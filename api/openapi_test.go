package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// loadOpenAPI parses and validates openapi.yaml with kin-openapi: structure,
// references, every example against its schema, and stray keys (an unquoted
// comma in a flow mapping splits a description into a bogus key).
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openAPI)
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("openapi.yaml does not validate: %v", err)
	}
	return doc
}

// mediaExample is one example of a request or response body.
type mediaExample struct {
	where  string // "POST /v1/search request", "POST /v1/search 200"
	opID   string
	status int // 0 for a request
	schema *openapi3.Schema
	value  any
}

// examplesOf lists every body example of the document, with its schema.
func examplesOf(doc *openapi3.T) []mediaExample {
	var out []mediaExample
	add := func(where, opID string, status int, content openapi3.Content) {
		for ct, mt := range content {
			if mt.Schema == nil {
				continue
			}
			w := where + " " + ct
			if mt.Example != nil {
				out = append(out, mediaExample{w, opID, status, mt.Schema.Value, mt.Example})
			}
			for name, ex := range mt.Examples {
				out = append(out, mediaExample{w + " " + name, opID, status, mt.Schema.Value, ex.Value.Value})
			}
		}
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			where := method + " " + path
			if op.RequestBody != nil {
				add(where+" request", op.OperationID, 0, op.RequestBody.Value.Content)
			}
			for code, r := range op.Responses.Map() {
				status, _ := strconv.Atoi(code)
				add(where+" "+code, op.OperationID, status, r.Value.Content)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].where < out[j].where })
	return out
}

// TestOpenAPIOperationIDs: every operation has a unique camelCase operationId
// (generated clients name their methods after them).
func TestOpenAPIOperationIDs(t *testing.T) {
	doc := loadOpenAPI(t)
	seen := map[string]string{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			id := op.OperationID
			switch {
			case id == "":
				t.Errorf("%s %s has no operationId", method, path)
			case strings.ToLower(id[:1]) != id[:1] || strings.ContainsAny(id, "_- ."):
				t.Errorf("%s %s: operationId %q is not camelCase", method, path, id)
			case seen[id] != "":
				t.Errorf("operationId %q on %s %s and %s", id, method, path, seen[id])
			}
			seen[id] = method + " " + path
		}
	}
}

// TestOpenAPIExamples validates every example against its schema, and checks
// that every JSON request body and every JSON success answer of /v1 has one.
func TestOpenAPIExamples(t *testing.T) {
	doc := loadOpenAPI(t)
	examples := examplesOf(doc)
	have := map[string]bool{}
	for _, ex := range examples {
		have[ex.where] = true
		if err := ex.schema.VisitJSON(ex.value); err != nil {
			t.Errorf("%s: example does not match its schema: %v", ex.where, err)
		}
	}
	for path, item := range doc.Paths.Map() {
		if !strings.HasPrefix(path, "/v1/") {
			continue
		}
		for method, op := range item.Operations() {
			if op.RequestBody != nil && op.RequestBody.Value.Content["application/json"] != nil &&
				!have[method+" "+path+" request application/json"] {
				t.Errorf("%s %s: request body has no example", method, path)
			}
			for code, r := range op.Responses.Map() {
				if strings.HasPrefix(code, "2") && r.Value.Content["application/json"] != nil &&
					!have[method+" "+path+" "+code+" application/json"] {
					t.Errorf("%s %s: %s answer has no example", method, path, code)
				}
			}
		}
	}
	if len(examples) < 20 {
		t.Errorf("only %d examples", len(examples))
	}
}

// TestOpenAPIValidatorCatchesBadExamples: the validation above would fail on a
// wrong example (an unknown field in the search request, a wrong status enum).
func TestOpenAPIValidatorCatchesBadExamples(t *testing.T) {
	doc := loadOpenAPI(t)
	search := doc.Paths.Find("/v1/search").Post
	req := search.RequestBody.Value.Content["application/json"].Schema.Value
	if err := req.VisitJSON(map[string]any{"query": "x", "topk": float64(5)}); err == nil {
		t.Error("an unknown request field passed the schema")
	}
	resp := search.Responses.Status(200).Value.Content["application/json"].Schema.Value
	if err := resp.VisitJSON(map[string]any{"results": []any{}, "status": "done", "exact": true, "audit_id": "a"}); err == nil {
		t.Error("an unknown status passed the schema")
	}
}

// requestTargets are the request types the handlers decode each operation's
// body into; validate is the handler's own check after decoding (nil: none
// that an example's fixed dates could pass forever).
var requestTargets = map[string]func() (any, func() error){
	"searchTickets": func() (any, func() error) {
		var r searchRequest
		return &r, func() error { _, err := r.validate(DefaultMaxTopK); return err }
	},
	"checkFlow":          func() (any, func() error) { var r flowRequest; return &r, nil },
	"pushTickets":        func() (any, func() error) { var r ticketsRequest; return &r, nil },
	"writeRelationships": func() (any, func() error) { var r relationshipsRequest; return &r, nil },
	"createGrants":       func() (any, func() error) { var r grantRequest; return &r, nil },
	"createAPIKey":       func() (any, func() error) { var r createKeyRequest; return &r, nil },
}

// TestOpenAPIRequestExamplesDecode: every JSON request example decodes in the
// handlers' strict decoder into the type its handler uses (a field the schema
// has and the handler does not, or a type mismatch, fails here).
func TestOpenAPIRequestExamplesDecode(t *testing.T) {
	doc := loadOpenAPI(t)
	n := 0
	for _, ex := range examplesOf(doc) {
		if ex.status != 0 || !strings.HasSuffix(ex.where, "application/json") || ex.opID == "mcpPost" {
			continue
		}
		target, ok := requestTargets[ex.opID]
		if !ok {
			t.Errorf("%s: no request type for operation %s in requestTargets", ex.where, ex.opID)
			continue
		}
		body, err := json.Marshal(ex.value)
		if err != nil {
			t.Fatal(err)
		}
		v, validate := target()
		if err := decodeStrict(bytes.NewReader(body), v); err != nil {
			t.Errorf("%s: the handler's decoder refuses the example: %v", ex.where, err)
			continue
		}
		if validate != nil {
			if err := validate(); err != nil {
				t.Errorf("%s: the handler refuses the example: %v", ex.where, err)
			}
		}
		n++
	}
	if n != len(requestTargets) {
		t.Errorf("decoded %d request examples, want one per operation in requestTargets (%d)", n, len(requestTargets))
	}
}

// TestOpenAPIExamplesRoundTrip sends the search and flow check examples to the
// real server (embedded engine and store with the demo org) and validates its
// answers, and a 400, against the document's schemas.
func TestOpenAPIExamplesRoundTrip(t *testing.T) {
	doc := loadOpenAPI(t)
	env := newFlowEnv(t)
	schemaOf := func(path string, status int, ct string) *openapi3.Schema {
		op := doc.Paths.Find(path).Post
		return op.Responses.Status(status).Value.Content[ct].Schema.Value
	}
	example := func(path string) any {
		return doc.Paths.Find(path).Post.RequestBody.Value.Content["application/json"].Example
	}
	check := func(what string, a answer, want int, schema *openapi3.Schema) {
		t.Helper()
		if a.code != want {
			t.Fatalf("%s: %d %s", what, a.code, a.raw)
		}
		var v any
		if err := json.Unmarshal([]byte(a.raw), &v); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if err := schema.VisitJSON(v); err != nil {
			t.Errorf("%s: the server's answer does not match the schema: %v\n%s", what, err, a.raw)
		}
	}

	a := do(t, "POST", env.base+"/v1/search", "anne", example("/v1/search"))
	check("search example", a, 200, schemaOf("/v1/search", 200, "application/json"))
	if n := len(a.body["results"].([]any)); n == 0 {
		t.Errorf("search example found nothing: %s", a.raw)
	}

	a = do(t, "POST", env.base+"/v1/flow/check", "copilot", example("/v1/flow/check"))
	check("flow check example", a, 200, schemaOf("/v1/flow/check", 200, "application/json"))

	a = do(t, "POST", env.base+"/v1/search", "anne", `{"query":"x","top_k":0}`)
	check("bad search", a, 400, schemaOf("/v1/search", 400, "application/problem+json"))
	if a.field() != "top_k" {
		t.Errorf("bad search names %q, want top_k", a.field())
	}
}

// TestOpenAPIProblemExamplesMatchErrorTable: every problem example has a type,
// status and title the error table gives together, so the document shows
// answers the server can send.
func TestOpenAPIProblemExamplesMatchErrorTable(t *testing.T) {
	doc := loadOpenAPI(t)
	n := 0
	for name, r := range doc.Components.Responses {
		mt := r.Value.Content["application/problem+json"]
		if mt == nil || mt.Example == nil {
			t.Errorf("response %s has no problem example", name)
			continue
		}
		ex := mt.Example.(map[string]any)
		status := int(ex["status"].(float64))
		ok := false
		for _, row := range errorTable {
			ok = ok || (row.status == status && ex["type"] == problemBase+row.typ)
		}
		if !ok || ex["title"] != http.StatusText(status) {
			t.Errorf("response %s: example type %v, status %d, title %v: not a row of the error table", name, ex["type"], status, ex["title"])
		}
		n++
	}
	if n < 9 {
		t.Errorf("%d problem examples, want one per response component (9)", n)
	}
}
