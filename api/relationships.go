package api

import (
	"context"
	"fmt"
	"strings"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
)

// maxRelationshipTuples caps the writes plus deletes of one POST /v1/relationships.
const maxRelationshipTuples = 1000

// relationshipsRequest is the body of POST /v1/relationships.
type relationshipsRequest struct {
	Writes  []authz.Tuple `json:"writes"`
	Deletes []authz.Tuple `json:"deletes"`
}

// relationshipsResponse says what was applied.
type relationshipsResponse struct {
	Written int `json:"written"`
	Deleted int `json:"deleted"`
}

// validate checks the shape of every tuple; the engine then checks them against
// the model (types, relations, conditions) before it writes anything.
func (r *relationshipsRequest) validate() error {
	if len(r.Writes)+len(r.Deletes) == 0 {
		return clearance.Invalid("writes", "writes and deletes are both empty")
	}
	if n := len(r.Writes) + len(r.Deletes); n > maxRelationshipTuples {
		return clearance.Invalid("writes", "%d tuples in one call; the limit is %d", n, maxRelationshipTuples)
	}
	for i, t := range r.Writes {
		field := fmt.Sprintf("writes[%d]", i)
		if err := validTuple(field, t); err != nil {
			return err
		}
		// A stored active tuple would turn a delegation into a permanent grant:
		// active is only ever contextual, added after a verified agent token.
		if t.Relation == "active" && strings.HasPrefix(t.Object, "delegation:") {
			return clearance.Invalid(field+".relation", "active tuples are contextual only and cannot be stored")
		}
		if t.Condition != nil && t.Condition.Name == "" {
			return clearance.Invalid(field+".condition.name", "is required")
		}
	}
	for i, t := range r.Deletes {
		field := fmt.Sprintf("deletes[%d]", i)
		if err := validTuple(field, t); err != nil {
			return err
		}
		if t.Condition != nil {
			return clearance.Invalid(field+".condition", "deletes match by user, relation and object only")
		}
	}
	return nil
}

func validTuple(field string, t authz.Tuple) error {
	switch {
	case !typedID(t.User, true):
		return clearance.Invalid(field+".user", "must be type:id or type:id#relation")
	case t.Relation == "" || strings.ContainsAny(t.Relation, ":#@ "):
		return clearance.Invalid(field+".relation", "must be a relation name")
	case !typedID(t.Object, false):
		return clearance.Invalid(field+".object", "must be type:id")
	}
	return nil
}

// typedID reports whether s looks like "type:id" (or "type:id#relation" when
// userset is allowed).
func typedID(s string, userset bool) bool {
	typ, id, ok := strings.Cut(s, ":")
	if !ok || typ == "" || id == "" || len(s) > 512 || strings.ContainsAny(s, " \t\n") {
		return false
	}
	if obj, rel, has := strings.Cut(id, "#"); has {
		return userset && obj != "" && rel != ""
	}
	return true
}

// applyRelationships writes r to the engine in one call.
func applyRelationships(ctx context.Context, e authz.Engine, r relationshipsRequest) (relationshipsResponse, error) {
	if err := r.validate(); err != nil {
		return relationshipsResponse{}, err
	}
	if err := e.Write(ctx, r.Writes, r.Deletes); err != nil {
		return relationshipsResponse{}, err
	}
	return relationshipsResponse{Written: len(r.Writes), Deleted: len(r.Deletes)}, nil
}
