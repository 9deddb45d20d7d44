package fga

import (
	"fmt"
	"slices"
	"strings"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"
	"google.golang.org/protobuf/proto"

	"github.com/clearance-dev/clearance/authz"
)

// Missing lists what want (clearance's model) defines and have lacks: each type,
// each relation, each user type a relation accepts directly (with its
// condition), each condition and condition parameter. The marker type is not
// needed. Sorted, readable ("relation project#can_view").
func Missing(want, have *openfgav1.AuthorizationModel) []string {
	var out []string
	types := map[string]*openfgav1.TypeDefinition{}
	for _, td := range have.GetTypeDefinitions() {
		types[td.GetType()] = td
	}
	for _, w := range want.GetTypeDefinitions() {
		name := w.GetType()
		if name == authz.ModelMarkerType {
			continue
		}
		h, ok := types[name]
		if !ok {
			out = append(out, "type "+name)
			continue
		}
		for rel := range w.GetRelations() {
			if _, ok := h.GetRelations()[rel]; !ok {
				out = append(out, "relation "+name+"#"+rel)
				continue
			}
			accepts := h.GetMetadata().GetRelations()[rel].GetDirectlyRelatedUserTypes()
			for _, ref := range w.GetMetadata().GetRelations()[rel].GetDirectlyRelatedUserTypes() {
				if !slices.ContainsFunc(accepts, func(r *openfgav1.RelationReference) bool { return proto.Equal(r, ref) }) {
					out = append(out, fmt.Sprintf("relation %s#%s accepting %s", name, rel, refString(ref)))
				}
			}
		}
	}
	for name, w := range want.GetConditions() {
		h, ok := have.GetConditions()[name]
		if !ok {
			out = append(out, "condition "+name)
			continue
		}
		for p, t := range w.GetParameters() {
			if !proto.Equal(h.GetParameters()[p], t) {
				out = append(out, fmt.Sprintf("condition %s parameter %s", name, p))
			}
		}
		if h.GetExpression() != w.GetExpression() {
			out = append(out, fmt.Sprintf("condition %s expression %q", name, w.GetExpression()))
		}
	}
	slices.Sort(out)
	return out
}

// Differing lists the relations both models have but define differently: the
// store's model decides access with its own definition. Sorted.
func Differing(want, have *openfgav1.AuthorizationModel) []string {
	types := map[string]*openfgav1.TypeDefinition{}
	for _, td := range have.GetTypeDefinitions() {
		types[td.GetType()] = td
	}
	var out []string
	for _, w := range want.GetTypeDefinitions() {
		h := types[w.GetType()]
		for rel, def := range w.GetRelations() {
			if hd, ok := h.GetRelations()[rel]; ok && !proto.Equal(hd, def) {
				out = append(out, w.GetType()+"#"+rel)
			}
		}
	}
	slices.Sort(out)
	return out
}

func refString(r *openfgav1.RelationReference) string {
	s := r.GetType()
	switch {
	case r.GetWildcard() != nil:
		s += ":*"
	case r.GetRelation() != "":
		s += "#" + r.GetRelation()
	}
	if r.GetCondition() != "" {
		s += " with " + r.GetCondition()
	}
	return s
}

// HasMarker reports whether m carries clearance's marker type.
func HasMarker(m *openfgav1.AuthorizationModel) bool {
	return slices.ContainsFunc(m.GetTypeDefinitions(), func(td *openfgav1.TypeDefinition) bool {
		return td.GetType() == authz.ModelMarkerType
	})
}

// ModelStore describes the store an engine settles its model in.
type ModelStore struct {
	ID string
	// Owned: clearance created the store, or it is a store clearance uses by
	// name whose latest model carries the marker type (or has no model yet), or
	// the datastore is clearance's alone (sqlite).
	Owned bool
	// WriteAllowed: the operator passed --openfga-write-model.
	WriteAllowed bool
}

// ChooseModel decides, from the store's latest model (nil: none), whether to
// write want (true) or use latest as it is. It refuses a store clearance does
// not own whose latest model lacks what clearance needs, naming each missing
// piece, so clearance never replaces another application's model by accident.
func ChooseModel(s ModelStore, want, latest *openfgav1.AuthorizationModel) (write bool, err error) {
	if latest != nil && SameModel(latest, want) {
		return false, nil
	}
	if s.WriteAllowed || s.Owned {
		return true, nil
	}
	if latest == nil {
		return false, fmt.Errorf("%w: store %s has no model and was not created by clearance; pass --openfga-write-model to write clearance's model into it", authz.ErrModelMismatch, s.ID)
	}
	if missing := Missing(want, latest); len(missing) > 0 {
		return false, fmt.Errorf("%w: the latest model %s of store %s (not clearance's own) lacks what clearance needs: %s; pass --openfga-write-model to write clearance's model as the store's latest, or use a store of clearance's own", authz.ErrModelMismatch, latest.GetId(), s.ID, strings.Join(missing, ", "))
	}
	return false, nil
}

// CheckPinned verifies a pinned model against want, naming each missing piece.
func CheckPinned(storeID string, want, pinned *openfgav1.AuthorizationModel) error {
	if missing := Missing(want, pinned); len(missing) > 0 {
		return fmt.Errorf("%w: the pinned model %s of store %s lacks what clearance needs: %s", authz.ErrModelMismatch, pinned.GetId(), storeID, strings.Join(missing, ", "))
	}
	return nil
}
