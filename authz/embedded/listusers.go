package embedded

import (
	"context"
	"fmt"
	"slices"
	"strings"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
)

var _ authz.UserLister = (*Engine)(nil)

// ListUsers implements authz.UserLister with OpenFGA's ListUsers. The server's
// own result cap and deadline are lifted in New (OpenFGA returns a partial list
// without an error when either cuts it); this package's ListUsersDeadline bounds
// the call instead, and a call whose context ended is reported as truncated
// whatever the server returned.
func (e *Engine) ListUsers(ctx context.Context, q authz.Query, object, relation, userType string) ([]string, error) {
	typ, id, ok := strings.Cut(object, ":")
	if !ok || typ == "" || id == "" || userType == "" {
		return nil, fmt.Errorf("%w: list users of %q for type %q", clearance.ErrInvalid, object, userType)
	}
	r, err := e.request(q)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ListUsersDeadline)
	defer cancel()
	resp, err := e.srv.ListUsers(ctx, &openfgav1.ListUsersRequest{
		StoreId:              e.storeID,
		AuthorizationModelId: e.modelID,
		Object:               &openfgav1.Object{Type: typ, Id: id},
		Relation:             relation,
		UserFilters:          []*openfgav1.UserTypeFilter{{Type: userType}},
		ContextualTuples:     r.tuples.GetTupleKeys(),
		Context:              r.context,
		Consistency:          r.consistency,
	})
	if cerr := ctx.Err(); cerr != nil {
		// OpenFGA answers what it found so far, without an error, when the
		// context ends: a strict subset.
		return nil, fmt.Errorf("%w: list %s users of %s#%s: %w", authz.ErrTruncated, userType, object, relation, cerr)
	}
	if err != nil {
		return nil, mapErr("list users", err)
	}
	return userStrings(resp.GetUsers()), nil
}

// userStrings turns ListUsers' answer into sorted, distinct "type:id" strings
// ("type:id#relation" for a userset, "type:*" for a wildcard).
func userStrings(us []*openfgav1.User) []string {
	out := make([]string, 0, len(us))
	for _, u := range us {
		switch {
		case u.GetObject() != nil:
			out = append(out, u.GetObject().GetType()+":"+u.GetObject().GetId())
		case u.GetUserset() != nil:
			s := u.GetUserset()
			out = append(out, s.GetType()+":"+s.GetId()+"#"+s.GetRelation())
		case u.GetWildcard() != nil:
			out = append(out, u.GetWildcard().GetType()+":*")
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
