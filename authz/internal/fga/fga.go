// Package fga holds what both engine backends share: tuple validation against the
// model (so a multi-chunk write can be refused before anything is written), the
// batch-check fan-out, and small conversions.
package fga

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"
	"github.com/openfga/openfga/pkg/typesystem"
	"google.golang.org/protobuf/proto"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
)

// Validator checks tuples against one authorization model.
type Validator struct {
	ts *typesystem.TypeSystem
}

// NewValidator builds a validator for model.
func NewValidator(model *openfgav1.AuthorizationModel) (*Validator, error) {
	ts, err := typesystem.New(model)
	if err != nil {
		return nil, fmt.Errorf("load authorization model: %w", err)
	}
	return &Validator{ts: ts}, nil
}

// invalid wraps authz.ErrInvalidTuple with the tuple and the reason.
func invalid(field string, t authz.Tuple, format string, args ...any) error {
	return fmt.Errorf("%w: %s %q: %s", authz.ErrInvalidTuple, field, t.String(), fmt.Sprintf(format, args...))
}

// splitRef splits "type:id" (id required) and reports whether it is well formed.
func splitRef(s string) (typ, id string, ok bool) {
	typ, id, ok = strings.Cut(s, ":")
	if !ok || typ == "" || id == "" || strings.ContainsAny(s, " \t\n") {
		return "", "", false
	}
	return typ, id, true
}

// Validate reports whether t may be written as a stored tuple (stored) or sent as a
// contextual tuple. Errors wrap authz.ErrInvalidTuple and name the field.
func (v *Validator) Validate(t authz.Tuple, stored bool) error {
	objType, objID, ok := splitRef(t.Object)
	if !ok || strings.Contains(objID, "#") {
		return invalid("object", t, "must be \"type:id\"")
	}
	if t.Relation == "" {
		return invalid("relation", t, "is empty")
	}
	userObj, userRel, _ := strings.Cut(t.User, "#")
	userType, userID, ok := splitRef(userObj)
	if !ok {
		return invalid("user", t, "must be \"type:id\", \"type:id#relation\" or \"type:*\"")
	}
	if _, err := v.ts.GetRelation(objType, t.Relation); err != nil {
		return invalid("relation", t, "%v", err)
	}
	if stored && objType == "delegation" && t.Relation == "active" {
		// A stored active tuple would turn a per-request session into a permanent grant.
		return invalid("relation", t, "delegation#active is only ever contextual, never stored")
	}
	refs, err := v.ts.GetDirectlyRelatedUserTypes(objType, t.Relation)
	if err != nil {
		return invalid("relation", t, "%v", err)
	}
	cond := ""
	if t.Condition != nil {
		cond = t.Condition.Name
		c, ok := v.ts.GetCondition(cond)
		if !ok {
			return invalid("condition", t, "condition %q is not defined in the model", cond)
		}
		for k, val := range t.Condition.Context {
			p, ok := c.GetParameters()[k]
			if !ok {
				return invalid("condition", t, "condition %q has no parameter %q", cond, k)
			}
			if err := checkParam(p.GetTypeName(), val); err != nil {
				return invalid("condition", t, "parameter %q: %v", k, err)
			}
		}
	}
	for _, r := range refs {
		if r.GetType() != userType || r.GetCondition() != cond {
			continue
		}
		switch {
		case r.GetWildcard() != nil:
			if userID == "*" && userRel == "" {
				return nil
			}
		case r.GetRelation() != "":
			if userRel == r.GetRelation() && userID != "*" {
				return nil
			}
		default:
			if userRel == "" && userID != "*" {
				return nil
			}
		}
	}
	if len(refs) == 0 {
		return invalid("relation", t, "%s#%s cannot be written directly (it is computed)", objType, t.Relation)
	}
	allowed := make([]string, 0, len(refs))
	for _, r := range refs {
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
		allowed = append(allowed, s)
	}
	return invalid("user", t, "%s#%s accepts only [%s]", objType, t.Relation, strings.Join(allowed, ", "))
}

// ValidateAll validates every tuple; the first failure is returned.
func (v *Validator) ValidateAll(ts []authz.Tuple, stored bool) error {
	for _, t := range ts {
		if err := v.Validate(t, stored); err != nil {
			return err
		}
	}
	return nil
}

// Batch answers n checks by calling do on consecutive chunks of at most size items,
// at most concurrency chunks at a time. do fills out[lo:hi]. The first error cancels
// the rest and is returned.
func Batch(ctx context.Context, n, size, concurrency int, do func(ctx context.Context, lo, hi int, out []bool) error) ([]bool, error) {
	out := make([]bool, n)
	if n == 0 {
		return out, nil
	}
	size = max(size, 1)
	concurrency = max(concurrency, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	sem := make(chan struct{}, concurrency)
	for lo := 0; lo < n; lo += size {
		hi := min(lo+size, n)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := do(ctx, lo, hi, out[lo:hi]); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: batch check: %w", authz.ErrUnavailable, err)
	}
	return out, nil
}

// SameModel reports whether two models are equal apart from their ids.
func SameModel(a, b *openfgav1.AuthorizationModel) bool {
	a, b = proto.Clone(a).(*openfgav1.AuthorizationModel), proto.Clone(b).(*openfgav1.AuthorizationModel)
	a.Id, b.Id = "", ""
	return proto.Equal(a, b)
}

// CheckFilter enforces OpenFGA's rule for reads: a filter needs an object, and an
// object given as "type:" (every object of a type) needs a user as well.
func CheckFilter(f authz.TupleFilter) error {
	if f.Object == "" && f.User == "" {
		return clearance.Invalid("filter", "object or user must be set")
	}
	if f.Object == "" {
		return clearance.Invalid("filter.object", "OpenFGA reads need an object or an object type (\"type:\")")
	}
	if strings.HasSuffix(f.Object, ":") && f.User == "" {
		return clearance.Invalid("filter.user", "reading every object of a type needs a user")
	}
	return nil
}

// checkParam checks a stored condition parameter against its declared type, so a
// bad value fails before any chunk of a large write is stored (the server would
// only refuse the chunk holding it).
func checkParam(typ openfgav1.ConditionParamTypeRef_TypeName, v any) error {
	str, isStr := v.(string)
	switch typ {
	case openfgav1.ConditionParamTypeRef_TYPE_NAME_TIMESTAMP:
		if _, err := time.Parse(time.RFC3339Nano, str); !isStr || err != nil {
			return fmt.Errorf("want an RFC 3339 timestamp, got %v", v)
		}
	case openfgav1.ConditionParamTypeRef_TYPE_NAME_DURATION:
		if _, err := time.ParseDuration(str); !isStr || err != nil {
			return fmt.Errorf("want a duration, got %v", v)
		}
	case openfgav1.ConditionParamTypeRef_TYPE_NAME_STRING, openfgav1.ConditionParamTypeRef_TYPE_NAME_IPADDRESS:
		if !isStr {
			return fmt.Errorf("want a string, got %T", v)
		}
	case openfgav1.ConditionParamTypeRef_TYPE_NAME_BOOL:
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("want a bool, got %T", v)
		}
	case openfgav1.ConditionParamTypeRef_TYPE_NAME_INT, openfgav1.ConditionParamTypeRef_TYPE_NAME_UINT, openfgav1.ConditionParamTypeRef_TYPE_NAME_DOUBLE:
		switch v.(type) {
		case int, int32, int64, uint, uint32, uint64, float32, float64:
		default:
			return fmt.Errorf("want a number, got %T", v)
		}
	}
	return nil
}

// Chunk is one write request of a planned Write.
type Chunk struct {
	Writes, Deletes []authz.Tuple
}

// PlanWrite validates a whole Write (writes as stored tuples, deletes by key only)
// and splits it into requests of at most limit tuples, so an invalid tuple fails the
// call before anything is sent.
func (v *Validator) PlanWrite(writes, deletes []authz.Tuple, limit int) ([]Chunk, error) {
	if err := v.ValidateAll(writes, true); err != nil {
		return nil, err
	}
	for _, d := range deletes {
		d.Condition = nil
		if err := v.Validate(d, false); err != nil {
			return nil, err
		}
	}
	limit = max(limit, 1)
	var chunks []Chunk
	for len(writes) > 0 || len(deletes) > 0 {
		n := min(len(writes), limit)
		m := min(len(deletes), limit-n)
		chunks = append(chunks, Chunk{Writes: writes[:n], Deletes: deletes[:m]})
		writes, deletes = writes[n:], deletes[m:]
	}
	return chunks, nil
}

// Item is one answer of a batch-check call, looked up by correlation id.
type Item struct {
	Found   bool
	Allowed *bool
	Err     string // non-empty: the engine failed on this item
}

// Fill copies a chunk's answers into out (checks[lo:lo+len(out)]); correlation id i
// belongs to out[i]. A missing, empty or failed item fails the whole chunk.
func Fill(out []bool, lo int, checks []authz.Check, item func(id string) Item) error {
	for i := range out {
		it := item(strconv.Itoa(i))
		c := checks[lo+i]
		switch {
		case !it.Found:
			return fmt.Errorf("%w: batch check: no result for item %d", authz.ErrUnavailable, lo+i)
		case it.Err != "":
			return fmt.Errorf("%w: batch check item %d (%s#%s@%s): %s", authz.ErrUnavailable, lo+i, c.Object, c.Relation, c.User, it.Err)
		case it.Allowed == nil:
			return fmt.Errorf("%w: batch check: empty result for item %d", authz.ErrUnavailable, lo+i)
		}
		out[i] = *it.Allowed
	}
	return nil
}

// Truncated is the error that ends a listing cut short.
func Truncated(objectType, relation, user string, cause error) error {
	return fmt.Errorf("%w: list %s %s for %s: %w", authz.ErrTruncated, objectType, relation, user, cause)
}
