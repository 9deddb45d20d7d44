package audit

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/clearance-dev/clearance"
)

// Genesis is the PrevHash of the first record ever appended.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Options every backend applies before it seals a record.
type Options struct {
	// HashQueries keeps only the sha256 of the query text (Query is cleared).
	HashQueries bool
	// Now stamps records that arrive without a time; nil means time.Now.
	Now func() time.Time
}

// Prepare validates r and normalizes it for storage: time in UTC, QueryHash
// filled from Query, Query cleared when hashing is configured. It writes nothing.
func (o Options) Prepare(r *Record) error {
	switch {
	case r == nil:
		return clearance.Invalid("record", "is nil")
	case r.Kind == "":
		return clearance.Invalid("kind", "is required")
	case r.Tenant == "":
		return clearance.Invalid("tenant", "is required")
	case r.ID != "" || r.Hash != "" || r.PrevHash != "":
		return clearance.Invalid("id", "is set by the log; leave id, prev_hash and hash empty")
	case r.TraceID != "" && !validTraceID(r.TraceID):
		return clearance.Invalid("trace_id", "is not 32 lowercase hex digits")
	case r.Redacted != 0:
		// Redacted marks a copy served to a reader, never a stored record.
		return clearance.Invalid("redacted", "is set only on records served to readers")
	}
	if r.Time.IsZero() {
		now := time.Now
		if o.Now != nil {
			now = o.Now
		}
		r.Time = now()
	}
	for i, c := range r.Results {
		if math.IsNaN(float64(c.Score)) || math.IsInf(float64(c.Score), 0) {
			return clearance.Invalid(fmt.Sprintf("candidates[%d].score", i), "is not a finite number")
		}
	}
	// UTC without the monotonic reading: the JSON form must read back identically.
	r.Time = r.Time.UTC().Round(0)
	if r.Query != "" {
		if r.QueryHash == "" {
			r.QueryHash = QueryHash(r.Query)
		}
		if o.HashQueries {
			r.Query = ""
		}
	}
	return nil
}

// validTraceID: a W3C trace id, 32 lowercase hex digits, not all zero.
func validTraceID(s string) bool {
	if len(s) != 32 || s == "00000000000000000000000000000000" {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// QueryHash is the hex sha256 of a query text.
func QueryHash(q string) string {
	s := sha256.Sum256([]byte(q))
	return hex.EncodeToString(s[:])
}

// Placeholders the caller-side encoding carries until the writer knows the id and
// the previous hash. Same lengths as the real values, which need no escaping.
const (
	placeholderID   = "00000000000000000000000000"
	placeholderPrev = Genesis
)

// Pending is a record encoded for sealing. The expensive part (encoding and
// canonicalizing) runs in the caller's goroutine, in parallel; the writer only
// fills in the id and the previous hash and hashes the canonical bytes, so the
// chain's critical section stays short.
type Pending struct {
	Record *Record
	line   []byte // stored form without the hash, struct order
	canon  []byte // canonical form
	// Offsets of the id and prev_hash values in line and canon.
	lineID, linePrev, canonID, canonPrev int
}

// NewPending encodes r (which must be prepared, and is not changed).
func NewPending(r *Record) (*Pending, error) {
	c := *r
	c.ID, c.PrevHash, c.Hash = placeholderID, placeholderPrev, ""
	line, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("audit: encode record: %w", err)
	}
	canon, err := canonical(line)
	if err != nil {
		return nil, err
	}
	p := &Pending{Record: &c, line: line, canon: canon}
	var ok1, ok2, ok3, ok4 bool
	p.lineID, ok1 = valueAt(line, `"id":"`+placeholderID+`"`, len(`"id":"`))
	p.linePrev, ok2 = valueAt(line, `"prev_hash":"`+placeholderPrev+`"`, len(`"prev_hash":"`))
	p.canonID, ok3 = valueAt(canon, `"id":"`+placeholderID+`"`, len(`"id":"`))
	p.canonPrev, ok4 = valueAt(canon, `"prev_hash":"`+placeholderPrev+`"`, len(`"prev_hash":"`))
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return nil, fmt.Errorf("audit: encode record: chain fields not found once")
	}
	return p, nil
}

// valueAt finds the one occurrence of key (a quoted key, colon and quoted value:
// inside JSON strings quotes are escaped, so it can only be the field itself).
func valueAt(b []byte, key string, skip int) (int, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 || bytes.LastIndex(b, []byte(key)) != i {
		return 0, false
	}
	return i + skip, true
}

// Seal links the record to prev under id, computes its hash and returns the
// stored form: one line of JSON (without the newline) whose "hash" is the sha256
// of the canonical JSON of the rest. Record gets ID, PrevHash and Hash.
func (p *Pending) Seal(id, prev string) []byte {
	copy(p.line[p.lineID:], id)
	copy(p.line[p.linePrev:], prev)
	copy(p.canon[p.canonID:], id)
	copy(p.canon[p.canonPrev:], prev)
	sum := sha256.Sum256(p.canon)
	h := hex.EncodeToString(sum[:])
	p.Record.ID, p.Record.PrevHash, p.Record.Hash = id, prev, h
	// Hash is the struct's last field (omitempty): appending it gives exactly what
	// json.Marshal would.
	out := make([]byte, 0, len(p.line)+len(h)+12)
	out = append(out, p.line[:len(p.line)-1]...)
	out = append(out, `,"hash":"`...)
	out = append(out, h...)
	return append(out, `"}`...)
}

// HashOf returns the hash of a stored record: the hex sha256 of its canonical JSON
// (object keys sorted at every level, numbers as written, "hash" left out). It
// depends only on the stored bytes, never on the Go struct, so records written by
// older versions keep verifying after fields are added.
func HashOf(raw []byte) (string, error) {
	c, err := canonical(raw)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(c)
	return hex.EncodeToString(s[:]), nil
}

// canonical re-encodes a stored record with sorted keys and without "hash".
func canonical(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("audit: decode record: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("audit: decode record: trailing data")
	}
	delete(m, "hash")
	c, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("audit: canonical record: %w", err)
	}
	return c, nil
}

// ValidID reports whether s is a record id (a ULID).
func ValidID(s string) bool {
	_, err := ulid.ParseStrict(s)
	return err == nil
}

// IDs hands out strictly increasing ULIDs: a new millisecond gets fresh random
// entropy; within the same millisecond (or when the clock is behind the floor, as
// with another replica's clock) the previous id plus one.
type IDs struct {
	last    ulid.ULID
	entropy io.Reader
}

// Next returns an id above both the last one handed out and floor (the chain
// head's id, possibly written by another process).
func (g *IDs) Next(now time.Time, floor string) string {
	if f, err := ulid.ParseStrict(floor); err == nil && f.Compare(g.last) > 0 {
		g.last = f
	}
	ms := ulid.Timestamp(now)
	if ms > g.last.Time() {
		if g.entropy == nil {
			g.entropy = rand.Reader
		}
		if id, err := ulid.New(ms, g.entropy); err == nil {
			g.last = id
			return id.String()
		}
	}
	g.last = increment(g.last)
	return g.last.String()
}

// increment adds one to the 80-bit entropy of id (carrying into the time only on
// overflow, which 80 random bits make practically impossible).
func increment(id ulid.ULID) ulid.ULID {
	hi := binary.BigEndian.Uint16(id[6:8])
	lo := binary.BigEndian.Uint64(id[8:16])
	lo++
	if lo == 0 {
		hi++
		if hi == 0 {
			_ = id.SetTime(id.Time() + 1)
		}
	}
	binary.BigEndian.PutUint16(id[6:8], hi)
	binary.BigEndian.PutUint64(id[8:16], lo)
	return id
}

// link is the part of a stored record the verifier needs besides its hash.
type link struct {
	ID       string `json:"id"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// Verifier walks a chain one stored record at a time and keeps the first break.
// Backends feed it every record in chain order; it never needs more than the
// current link in memory.
type Verifier struct {
	report VerifyReport
	pos    int64
	prev   string // hash the next record must link to
	prevID string
	// After a link break: the hash the broken record pointed at. If a later record
	// has it, the break is a reordering; if none does, a removal.
	missing string
	pending *Problem
}

// NewVerifier starts at the checkpoint (nil: the genesis).
func NewVerifier(cp *Checkpoint) *Verifier {
	v := &Verifier{prev: Genesis}
	if cp != nil {
		v.prev, v.prevID, v.pos = cp.Hash, cp.ID, cp.Records
		v.report.Checkpoint = cp
	}
	v.report.HeadHash = v.prev
	return v
}

// Done reports whether the outcome is decided, so the caller may stop reading.
func (v *Verifier) Done() bool { return v.report.Problem != nil }

// Fail records a problem found outside the chain walk (a bad checkpoint, an
// unreadable entry) unless one was already found.
func (v *Verifier) Fail(kind ProblemKind, id, detail string) {
	if v.report.Problem == nil && v.pending == nil {
		v.report.Problem = &Problem{Kind: kind, Position: v.pos, ID: id, Detail: detail}
	}
}

// Add checks the next stored record.
func (v *Verifier) Add(raw []byte) {
	if v.Done() {
		return
	}
	var l link
	if err := json.Unmarshal(raw, &l); err != nil || l.ID == "" || l.Hash == "" {
		v.Fail(Corrupt, "", "entry is not a record")
		return
	}
	if v.pending != nil {
		if l.Hash == v.missing {
			p := *v.pending
			p.Kind = Reordered
			p.Detail = fmt.Sprintf("record %s should come before it but appears later (position %d)", l.ID, v.pos)
			v.report.Problem = &p
		}
		v.pos++
		return
	}
	if v.report.Checkpoint != nil && v.report.Records == 0 && l.ID <= v.report.Checkpoint.ID {
		return // pruned by the checkpoint; its segment was not deleted yet
	}
	h, err := HashOf(raw)
	switch {
	case err != nil:
		v.Fail(Corrupt, l.ID, err.Error())
		return
	case h != l.Hash:
		v.Fail(Edited, l.ID, "content does not match its hash")
		return
	case l.PrevHash != v.prev:
		v.missing = l.PrevHash
		v.pending = &Problem{Kind: Removed, Position: v.pos, ID: l.ID,
			Detail: fmt.Sprintf("does not link to the record before it (%s): a record between them was removed, or that record was rewritten", orGenesis(v.prevID))}
		v.pos++
		return
	case l.ID <= v.prevID:
		v.Fail(Reordered, l.ID, fmt.Sprintf("id is not above the previous id %s", v.prevID))
		return
	}
	if v.report.Records == 0 {
		v.report.FirstID = l.ID
	}
	v.report.Records++
	v.report.LastID, v.report.HeadHash = l.ID, l.Hash
	v.prev, v.prevID = l.Hash, l.ID
	v.pos++
}

// Torn records a torn tail (not a break).
func (v *Verifier) Torn(t TornTail) { v.report.TornTail = &t }

// Report returns the outcome after the last record.
func (v *Verifier) Report() VerifyReport {
	r := v.report
	if r.Problem == nil && v.pending != nil {
		r.Problem = v.pending
	}
	return r
}

func orGenesis(id string) string {
	if id == "" {
		return "genesis"
	}
	return id
}
