package embedded

import (
	"slices"

	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/lexical"
)

// index is the in-memory state: tickets, and their chunk vectors grouped by
// (tenant, project) into partitions. Each partition keeps its vectors in one
// row-major slab, so a filtered scan reads only allowed partitions, sequentially.
// A ticket's rows live in its partition but not necessarily next to each other:
// removal swaps the partition's last row into the hole, which keeps slabs dense
// at O(rows of the ticket) cost per write.
type index struct {
	dim      int
	quantize bool
	tickets  map[string]*ticket
	tenants  map[string]map[string]*partition // tenant -> project -> partition
	dict     *termDict                        // the lexical arm's terms
	chunks   int
	// bytes is the encoded size of all live tickets: about what a snapshot
	// takes, for the compaction heuristic.
	bytes int64
}

// ticket is one indexed ticket; rows[k] is the row of chunk k in part.
type ticket struct {
	retrieval.Ticket
	part  *partition
	rows  []int32
	ords  []int32
	texts []string
	lex   *lexTicket // the lexical documents of the chunks
	// size is the encoded size of the ticket's live log record, for the
	// compaction heuristic.
	size int64
}

// partition holds the rows of one (tenant, project).
type partition struct {
	tenant, project string
	vecs            []float32 // len(rows) * dim
	rows            []rowRef
	q               *quantized // nil unless the index quantizes
	lex             *lexPart
}

// rowRef points a row back to its ticket and chunk, so a swapped row's ticket
// can be updated and a hit can be described.
type rowRef struct {
	t *ticket
	k int32
}

func newIndex(dim int, quantize bool) *index {
	return &index{dim: dim, quantize: quantize, tickets: map[string]*ticket{}, tenants: map[string]map[string]*partition{}, dict: newTermDict()}
}

func (ix *index) partition(tenant, project string, create bool) *partition {
	ps := ix.tenants[tenant]
	if p := ps[project]; p != nil || !create {
		return p
	}
	if ps == nil {
		ps = map[string]*partition{}
		ix.tenants[tenant] = ps
	}
	p := &partition{tenant: tenant, project: project, lex: newLexPart()}
	if ix.quantize {
		p.q = &quantized{}
	}
	ps[project] = p
	return p
}

// reserve grows a partition's capacity for rows more rows (used when loading a
// snapshot, whose header knows every partition's size).
func (ix *index) reserve(tenant, project string, rows int) {
	p := ix.partition(tenant, project, true)
	p.vecs = slices.Grow(p.vecs, rows*ix.dim)
	p.rows = slices.Grow(p.rows, rows)
	p.q.grow(rows, ix.dim)
}

// upsert replaces a ticket and its chunks. vecs holds the chunks' vectors back to
// back; docs their lexical documents (nil: analyzed here, as on replay). The
// caller has validated everything.
func (ix *index) upsert(t retrieval.Ticket, ords []int32, texts []string, vecs []float32, docs []lexical.Doc, size int64) {
	ix.remove(t.ID)
	p := ix.partition(t.Tenant, t.Project, true)
	tk := &ticket{Ticket: t, part: p, ords: ords, texts: texts, size: size}
	ix.tickets[t.ID] = tk
	ix.bytes += size
	if docs == nil {
		docs = lexDocs(t, texts)
	}
	ix.intern(tk, docs)
	ix.appendRows(p, tk, vecs)
}

func (ix *index) appendRows(p *partition, tk *ticket, vecs []float32) {
	p.lex.add(tk)
	n := len(vecs) / max(ix.dim, 1)
	tk.part = p
	tk.rows = make([]int32, n)
	for k := range n {
		tk.rows[k] = int32(len(p.rows))
		p.rows = append(p.rows, rowRef{t: tk, k: int32(k)})
	}
	p.vecs = append(p.vecs, vecs...)
	p.q.append(vecs, ix.dim)
	ix.chunks += n
}

// remove deletes a ticket; it reports whether it existed.
func (ix *index) remove(id string) bool {
	tk := ix.tickets[id]
	if tk == nil {
		return false
	}
	ix.removeRows(tk)
	ix.release(tk)
	delete(ix.tickets, id)
	ix.bytes -= tk.size
	return true
}

// removeRows takes a ticket's rows out of its partition. Rows go in descending
// position order, so the row swapped into a hole never belongs to tk itself.
func (ix *index) removeRows(tk *ticket) {
	p := tk.part
	pos := slices.Clone(tk.rows)
	slices.Sort(pos)
	d := ix.dim
	for i := len(pos) - 1; i >= 0; i-- {
		at := int(pos[i])
		last := len(p.rows) - 1
		if at != last {
			moved := p.rows[last]
			p.rows[at] = moved
			moved.t.rows[moved.k] = int32(at)
			copy(p.vecs[at*d:(at+1)*d], p.vecs[last*d:(last+1)*d])
			p.q.move(at, last, d)
		}
		p.rows = p.rows[:last]
		p.vecs = p.vecs[:last*d]
		p.q.truncate(last, d)
	}
	ix.chunks -= len(pos)
	tk.rows = nil
	p.lex.remove(tk)
	if len(p.rows) == 0 {
		ps := ix.tenants[p.tenant]
		delete(ps, p.project)
		if len(ps) == 0 {
			delete(ix.tenants, p.tenant)
		}
	} else if cap(p.rows) > 1024 && len(p.rows) < cap(p.rows)/4 {
		// Give memory back after large deletes.
		p.rows = slices.Clip(p.rows)
		p.vecs = slices.Clone(p.vecs)
		p.q.clip()
	}
}

// move changes a ticket's project; it reports whether the ticket exists.
func (ix *index) move(id, project string) bool {
	tk := ix.tickets[id]
	if tk == nil {
		return false
	}
	if tk.Project == project {
		return true
	}
	vecs := ix.vectors(tk)
	ix.removeRows(tk) // the ticket keeps its interned terms
	tk.Project = project
	ix.appendRows(ix.partition(tk.Tenant, project, true), tk, vecs)
	return true
}

// vectors copies a ticket's vectors out, in chunk order.
func (ix *index) vectors(tk *ticket) []float32 {
	d := ix.dim
	out := make([]float32, 0, len(tk.rows)*d)
	for _, r := range tk.rows {
		out = append(out, tk.part.vecs[int(r)*d:(int(r)+1)*d]...)
	}
	return out
}
