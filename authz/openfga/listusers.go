package openfga

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	fgasdk "github.com/openfga/go-sdk"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
)

var _ authz.UserLister = (*Engine)(nil)

// ListUsers implements authz.UserLister with the server's ListUsers, which is
// not streamed and has no paging. The server cuts it silently at
// --listUsers-max-results (1,000 by default) and at --listUsers-deadline (3 s),
// answering the partial list as if it were complete. Config tells this package
// both values: an answer with at least the cap's number of users, or a call that
// lasted the server's deadline, is reported as truncated.
//
// The cap counts users the server found and then excluded (blocked), so a cut
// answer can hold fewer users than the cap: run the server with
// --listUsers-max-results 0 and set ServerListUsersMaxResults to -1 (see
// docs/flow.md).
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
	start := time.Now()
	resp, _, err := e.api.ListUsers(ctx, e.storeID).Body(fgasdk.ListUsersRequest{
		AuthorizationModelId: &e.modelID,
		Object:               fgasdk.FgaObject{Type: typ, Id: id},
		Relation:             relation,
		UserFilters:          []fgasdk.UserTypeFilter{{Type: userType}},
		ContextualTuples:     contextual(r.tuples),
		Context:              r.context,
		Consistency:          r.consistency,
	}).Execute()
	what := fmt.Sprintf("list %s users of %s#%s", userType, object, relation)
	if cerr := ctx.Err(); cerr != nil {
		return nil, fmt.Errorf("%w: %s: %w", authz.ErrTruncated, what, cerr)
	}
	if err != nil {
		return nil, mapErr("list users", err)
	}
	if elapsed := time.Since(start); e.cfg.ServerListUsersDeadline > 0 && elapsed >= e.cfg.ServerListUsersDeadline {
		return nil, fmt.Errorf("%w: %s: the call lasted %v, the server's deadline is %v", authz.ErrTruncated, what, elapsed, e.cfg.ServerListUsersDeadline)
	}
	if limit := e.cfg.ServerListUsersMaxResults; limit > 0 && len(resp.Users) >= limit {
		return nil, fmt.Errorf("%w: %s: %d users, the server's cap is %d", authz.ErrTruncated, what, len(resp.Users), limit)
	}
	out := make([]string, 0, len(resp.Users))
	for _, u := range resp.Users {
		switch {
		case u.Object != nil:
			out = append(out, u.Object.Type+":"+u.Object.Id)
		case u.Userset != nil:
			out = append(out, u.Userset.Type+":"+u.Userset.Id+"#"+u.Userset.Relation)
		case u.Wildcard != nil:
			out = append(out, u.Wildcard.Type+":*")
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func contextual(t *fgasdk.ContextualTupleKeys) *[]fgasdk.TupleKey {
	if t == nil {
		return nil
	}
	return &t.TupleKeys
}
