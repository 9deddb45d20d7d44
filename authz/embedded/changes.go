package embedded

import (
	"strconv"
	"sync"

	"github.com/clearance-dev/clearance/authz"
)

// Bounds of the record of recent writes behind ChangedObjects.
const (
	changeLogRevisions = 1024 // revisions remembered
	changeLogObjects   = 256  // objects remembered per revision; more is "unknown"
)

// changeLog remembers which objects the last writes of this process touched,
// by the process revision each write moved to. Only meaningful where the
// process revision is the revision (sqlite, memory: no other writer).
type changeLog struct {
	mu   sync.Mutex
	objs map[uint64][]string // revision -> objects; nil slice: too many to keep
}

// moved records a write (attempted: it may have committed even if it failed)
// and moves the process revision. The record is in place before the revision
// is visible, so a caller that sees the new revision finds its objects.
func (e *Engine) moved(writes, deletes []authz.Tuple) {
	var objs []string
	if n := len(writes) + len(deletes); n <= changeLogObjects {
		objs = make([]string, 0, n)
		for _, t := range writes {
			objs = append(objs, t.Object)
		}
		for _, t := range deletes {
			objs = append(objs, t.Object)
		}
	}
	c := &e.changes
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.objs == nil {
		c.objs = map[uint64][]string{}
	}
	rev := e.revision.Load() + 1
	c.objs[rev] = objs
	delete(c.objs, rev-changeLogRevisions)
	e.revision.Store(rev)
}

// ChangedObjects implements authz.ChangeLister: the objects of every tuple
// written or deleted after revision from, up to revision to. On PostgreSQL they
// come from the shared change log (writes of every replica); on sqlite and
// memory, which no other process writes, from this process's own record. ok is
// false when it cannot say (another source, revisions out of order, or writes
// no longer or never recorded in full); the caller must then assume anything
// changed.
func (e *Engine) ChangedObjects(from, to authz.Revision) (objects []string, ok bool) {
	if e.changelog != nil {
		return e.changelog.ChangedObjects(from, to)
	}
	if from.Source != authz.RevisionProcess || to.Source != authz.RevisionProcess {
		return nil, false
	}
	f, err1 := strconv.ParseUint(from.Key, 10, 64)
	t, err2 := strconv.ParseUint(to.Key, 10, 64)
	if err1 != nil || err2 != nil || t < f || t-f > changeLogRevisions {
		return nil, false
	}
	c := &e.changes
	c.mu.Lock()
	defer c.mu.Unlock()
	for r := f + 1; r <= t; r++ {
		objs, found := c.objs[r]
		if !found || objs == nil {
			return nil, false
		}
		objects = append(objects, objs...)
	}
	return objects, true
}
