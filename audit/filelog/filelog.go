// Package filelog stores the audit log in a directory: append-only segment files of
// JSON lines (segments/000001.log, ...), fsynced by a group commit, rotated by
// size and age, pruned by retention behind a signed checkpoint.
//
// Layout of Config.Dir:
//
//	LOCK              flock'ed by the one writing process
//	segments/NNNNNN.log  one sealed record per line, in chain order
//	checkpoint.json   the signed checkpoint of the last prune (absent before)
//	checkpoint.key    Ed25519 seed that signs checkpoints (mode 0600)
package filelog

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/audit"
	"github.com/clearance-dev/clearance/audit/internal/commit"
	"github.com/clearance-dev/clearance/internal/dirlock"
)

// Defaults.
const (
	DefaultMaxSegmentBytes   = 32 << 20
	DefaultMaxSegmentAge     = 24 * time.Hour
	DefaultRetentionInterval = time.Hour
	DefaultPreallocate       = 4 << 20
)

// Config of a file log.
type Config struct {
	// Dir holds the log (serve uses <data-dir>/audit).
	Dir string
	// MaxSegmentBytes and MaxSegmentAge start a new segment; retention deletes
	// whole segments, so they are also its granularity.
	MaxSegmentBytes int64
	MaxSegmentAge   time.Duration
	// Retention prunes segments whose records are all older than this (0: keep
	// everything). Checked every RetentionInterval.
	Retention         time.Duration
	RetentionInterval time.Duration
	// HashQueries stores only the sha256 of query texts.
	HashQueries bool
	// FailOpen lets Append succeed when the disk fails (the record is lost and an
	// error is logged). Off by default: searches then fail closed.
	FailOpen bool
	// Observe, when set, is told about every group-commit write (metrics).
	Observe audit.FlushObserver
	// Preallocate is how far ahead segment files are filled with zeros (default
	// 4 MiB, capped at MaxSegmentBytes; negative: off). Appends then overwrite
	// allocated space and are made durable with fdatasync, which needs no journal
	// commit: on a shared disk that keeps an append from waiting for other
	// processes' dirty data. A segment's records end where the zeros start.
	Preallocate int64
	// NoSync skips fsync (tests and benchmarks only: a crash may lose records).
	NoSync bool
	// ReadOnly opens without the lock and without a writer, for `clearance audit`
	// next to a running server. Append fails.
	ReadOnly bool
	Logger   *slog.Logger
	Now      func() time.Time
}

type segment struct {
	seq     int
	path    string
	firstID string // "" while empty
	size    int64  // bytes to read; -1: the whole file
}

// Log is an audit log in a directory. It implements audit.Log and audit.Reader.
type Log struct {
	cfg  Config
	opts audit.Options
	log  *slog.Logger
	lock *os.File

	mu       sync.Mutex // guards everything below
	segs     []segment
	f        *os.File // active (last) segment
	alloc    int64    // physical size of the active segment (>= its records' end)
	segStart time.Time
	headID   string
	headHash string
	broken   error
	ids      audit.IDs
	buf      []byte

	committer *commit.Committer
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var (
	_ audit.Log    = (*Log)(nil)
	_ audit.Reader = (*Log)(nil)
)

// Open opens (creating it when missing) the log in cfg.Dir. A torn last record
// left by a crash is cut off and logged. Unless ReadOnly, it takes the directory's
// lock and starts the group-commit writer and the retention loop.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if cfg.Dir == "" {
		return nil, clearance.Invalid("dir", "is required")
	}
	if cfg.MaxSegmentBytes <= 0 {
		cfg.MaxSegmentBytes = DefaultMaxSegmentBytes
	}
	if cfg.MaxSegmentAge <= 0 {
		cfg.MaxSegmentAge = DefaultMaxSegmentAge
	}
	if cfg.RetentionInterval <= 0 {
		cfg.RetentionInterval = DefaultRetentionInterval
	}
	if cfg.Preallocate == 0 {
		cfg.Preallocate = DefaultPreallocate
	}
	cfg.Preallocate = min(cfg.Preallocate, cfg.MaxSegmentBytes)
	if cfg.Retention < 0 {
		return nil, clearance.Invalid("retention", "must not be negative")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{cfg: cfg, opts: audit.Options{HashQueries: cfg.HashQueries, Now: cfg.Now}, log: cfg.Logger, stop: make(chan struct{})}
	if cfg.ReadOnly {
		if _, err := os.Stat(l.segDir()); err != nil {
			return nil, fmt.Errorf("audit: open %s: %w", cfg.Dir, err)
		}
		return l, nil
	}
	if err := os.MkdirAll(l.segDir(), 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	lock, err := dirlock.Acquire(filepath.Join(cfg.Dir, "LOCK"), "audit dir")
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	l.lock = lock
	if err := l.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	l.committer = commit.New(commit.Config{Flush: l.flush, FailOpen: cfg.FailOpen, Logger: cfg.Logger, Observe: cfg.Observe})
	if cfg.Retention > 0 {
		l.wg.Add(1)
		go l.retain()
	}
	return l, nil
}

func (l *Log) segDir() string         { return filepath.Join(l.cfg.Dir, "segments") }
func (l *Log) checkpointPath() string { return filepath.Join(l.cfg.Dir, "checkpoint.json") }
func (l *Log) keyPath() string        { return filepath.Join(l.cfg.Dir, "checkpoint.key") }

func segName(seq int) string { return fmt.Sprintf("%06d.log", seq) }

// listSegments reads the segment directory in order, with each one's first id.
func (l *Log) listSegments() ([]segment, error) {
	ents, err := os.ReadDir(l.segDir())
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var segs []segment
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok || e.IsDir() {
			continue
		}
		seq, err := strconv.Atoi(name)
		if err != nil || seq <= 0 {
			continue
		}
		s := segment{seq: seq, path: filepath.Join(l.segDir(), e.Name()), size: -1}
		s.firstID = firstID(s.path)
		segs = append(segs, s)
	}
	slices.SortFunc(segs, func(a, b segment) int { return a.seq - b.seq })
	return segs, nil
}

// firstID reads the id of a segment's first record ("" when none).
func firstID(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var b [64]byte
	n, _ := io.ReadFull(f, b[:])
	if id, ok := lineID(b[:n]); ok {
		return id
	}
	return ""
}

// lineID takes the id from the front of a sealed line: "id" is the first field.
func lineID(line []byte) (string, bool) {
	const pre = `{"id":"`
	if len(line) < len(pre)+27 || !bytes.HasPrefix(line, []byte(pre)) || line[len(pre)+26] != '"' {
		return "", false
	}
	return string(line[len(pre) : len(pre)+26]), true
}

// validEnd returns the end of the last complete line that holds a sealed record,
// and the link of that record. Anything after it is a torn tail.
func validEnd(data []byte) (int64, *link) {
	var end int64
	var last *link
	var off int64
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		var lk link
		if json.Unmarshal(data[:i], &lk) == nil && lk.ID != "" && lk.Hash != "" {
			end, last = off+int64(i)+1, &lk
		}
		off += int64(i) + 1
		data = data[i+1:]
	}
	return end, last
}

type link struct {
	ID   string    `json:"id"`
	Hash string    `json:"hash"`
	Time time.Time `json:"time"`
}

// recover finds the chain head, cuts a torn tail and opens the active segment.
func (l *Log) recover() error {
	segs, err := l.listSegments()
	if err != nil {
		return err
	}
	cp, err := l.readCheckpoint()
	if err != nil {
		return err
	}
	l.headHash = audit.Genesis
	if cp != nil {
		l.headID, l.headHash = cp.ID, cp.Hash
	}
	if len(segs) == 0 {
		segs = []segment{{seq: 1, path: filepath.Join(l.segDir(), segName(1))}}
	}
	// The head is the last sealed record of the newest segment that has one.
	for i := len(segs) - 1; i >= 0; i-- {
		data, err := os.ReadFile(segs[i].path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		end, last := validEnd(data)
		if i == len(segs)-1 {
			if torn := tornBytes(data, end); torn > 0 {
				// The one write a crash interrupted; it was never acknowledged.
				if err := os.Truncate(segs[i].path, end); err != nil {
					return fmt.Errorf("audit: cut torn tail: %w", err)
				}
				l.log.Warn("audit: cut torn tail left by a crash", "segment", filepath.Base(segs[i].path), "offset", end, "bytes", torn)
			}
		}
		if last != nil {
			if cp == nil || last.ID > cp.ID {
				l.headID, l.headHash = last.ID, last.Hash
			}
			if i == len(segs)-1 {
				if first, ok := lineID(data); ok {
					segs[i].firstID = first
					var lk link
					_ = json.Unmarshal(data[:bytes.IndexByte(data, '\n')], &lk)
					l.segStart = lk.Time
				}
			}
			break
		}
	}
	act := &segs[len(segs)-1]
	f, err := os.OpenFile(act.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	data, err := os.ReadFile(act.path)
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	if err := audit.SyncDir(l.segDir()); err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	act.size, _ = validEnd(data)
	l.f, l.segs, l.alloc = f, segs, int64(len(data))
	return nil
}

// tornBytes counts the bytes after end that are not preallocation zeros.
func tornBytes(data []byte, end int64) int64 {
	return int64(len(bytes.TrimRight(data[end:], "\x00")))
}

// Append makes r durable (group commit) and fills its ID, PrevHash and Hash.
func (l *Log) Append(ctx context.Context, r *audit.Record) error {
	if l.committer == nil {
		return fmt.Errorf("%w: opened read-only", audit.ErrUnavailable)
	}
	if err := l.opts.Prepare(r); err != nil {
		return err
	}
	return l.committer.Append(ctx, r)
}

// flush writes one batch with one write and one fsync.
func (l *Log) flush(recs []*audit.Pending) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.broken != nil {
		return fmt.Errorf("%w: %v", audit.ErrUnavailable, l.broken)
	}
	now := l.cfg.Now()
	act := &l.segs[len(l.segs)-1]
	if act.size > 0 && now.Sub(l.segStart) >= l.cfg.MaxSegmentAge {
		if err := l.rotate(); err != nil {
			return err
		}
		act = &l.segs[len(l.segs)-1]
	}
	buf := l.buf[:0]
	head, headID := l.headHash, l.headID
	for _, p := range recs {
		line := p.Seal(l.ids.Next(now, headID), head)
		buf = append(append(buf, line...), '\n')
		head, headID = p.Record.Hash, p.Record.ID
	}
	l.buf = buf
	end := act.size + int64(len(buf))
	grow := end > l.alloc
	if grow && l.cfg.Preallocate > 0 {
		// Zeros up to the next preallocation step, in the same write.
		pad := (end+l.cfg.Preallocate-1)/l.cfg.Preallocate*l.cfg.Preallocate - end
		buf = append(buf, make([]byte, pad)...)
	}
	_, err := l.f.WriteAt(buf, act.size)
	if err == nil && !l.cfg.NoSync {
		if grow {
			err = l.f.Sync() // the size changed: metadata too
		} else {
			err = syncData(l.f)
		}
	}
	if err != nil {
		// Take the batch back so no unacknowledged record stays in front of later
		// ones; if even that fails, refuse every later write (fail closed).
		if terr := l.f.Truncate(act.size); terr != nil {
			l.broken = fmt.Errorf("write failed (%v) and could not be undone: %w", err, terr)
			l.log.Error("audit log is broken; appends fail until restart", "err", l.broken)
		}
		l.alloc = act.size
		return fmt.Errorf("%w: write: %v", audit.ErrUnavailable, err)
	}
	l.alloc = max(l.alloc, act.size+int64(len(buf)))
	if act.size == 0 {
		act.firstID, l.segStart = recs[0].Record.ID, now
	}
	act.size = end
	l.headHash, l.headID = head, headID
	if act.size >= l.cfg.MaxSegmentBytes {
		if err := l.rotate(); err != nil {
			// The batch is durable; the next one retries the rotation.
			l.log.Warn("audit: segment rotation failed", "err", err)
		}
	}
	return nil
}

// rotate starts the next segment. Called with mu held.
func (l *Log) rotate() error {
	next := l.segs[len(l.segs)-1].seq + 1
	path := filepath.Join(l.segDir(), segName(next))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%w: rotate: %v", audit.ErrUnavailable, err)
	}
	if err := audit.SyncDir(l.segDir()); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("%w: rotate: %v", audit.ErrUnavailable, err)
	}
	// The finished segment keeps its zero tail; readers stop at the last record.
	l.f.Close()
	l.f, l.alloc = f, 0
	l.segs = append(l.segs, segment{seq: next, path: path})
	l.segStart = time.Time{}
	return nil
}

// snapshot returns the segments with the sizes readers may read (never a write in
// flight). Read-only logs list the directory each time.
func (l *Log) snapshot() ([]segment, error) {
	if l.committer == nil {
		return l.listSegments()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.segs), nil
}

func readSegment(s segment) ([]byte, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // pruned meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", audit.ErrUnavailable, filepath.Base(s.path), err)
	}
	if s.size >= 0 && int64(len(data)) > s.size {
		data = data[:s.size]
	}
	return data, nil
}

// lines splits data into complete lines (a trailing partial line is left out).
func lines(data []byte) [][]byte {
	var out [][]byte
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return out
		}
		out = append(out, data[:i])
		data = data[i+1:]
	}
}

// List answers records newest first (oldest first with Filter.After).
func (l *Log) List(ctx context.Context, f audit.Filter) (audit.Page, error) {
	if err := f.Validate(); err != nil {
		return audit.Page{}, err
	}
	segs, err := l.snapshot()
	if err != nil {
		return audit.Page{}, err
	}
	pre := prefilter(f)
	var out []audit.Record
	take := func(line []byte) (bool, error) {
		id, ok := lineID(line)
		if !ok {
			return false, nil
		}
		if (f.Cursor != "" && id >= f.Cursor) || (f.After != "" && id <= f.After) {
			return false, nil
		}
		for _, p := range pre {
			if !bytes.Contains(line, p) {
				return false, nil
			}
		}
		var r audit.Record
		if err := json.Unmarshal(line, &r); err != nil {
			return false, nil // corrupt lines are Verify's business
		}
		if f.Match(&r) {
			out = append(out, r)
		}
		return len(out) > f.Limit, ctx.Err()
	}
	if f.After == "" {
	newest:
		for i := len(segs) - 1; i >= 0; i-- {
			if f.Cursor != "" && segs[i].firstID >= f.Cursor {
				continue
			}
			data, err := readSegment(segs[i])
			if err != nil {
				return audit.Page{}, err
			}
			ls := lines(data)
			for j := len(ls) - 1; j >= 0; j-- {
				full, err := take(ls[j])
				if err != nil {
					return audit.Page{}, err
				}
				if full {
					break newest
				}
			}
		}
	} else {
	oldest:
		for i, s := range segs {
			if i+1 < len(segs) && segs[i+1].firstID != "" && segs[i+1].firstID <= f.After {
				continue
			}
			data, err := readSegment(s)
			if err != nil {
				return audit.Page{}, err
			}
			for _, line := range lines(data) {
				full, err := take(line)
				if err != nil {
					return audit.Page{}, err
				}
				if full {
					break oldest
				}
			}
		}
	}
	var p audit.Page
	if len(out) > f.Limit {
		out = out[:f.Limit]
		p.Next = out[len(out)-1].ID
	} else if f.After != "" && len(out) > 0 {
		p.Next = out[len(out)-1].ID
	} else if f.After != "" {
		p.Next = f.After
	}
	p.Records = out
	return p, nil
}

// prefilter returns byte strings a matching line must contain, so most lines are
// skipped without decoding.
func prefilter(f audit.Filter) [][]byte {
	var pre [][]byte
	add := func(key, v string) {
		if v != "" {
			b, _ := json.Marshal(v)
			pre = append(pre, append([]byte(`"`+key+`":`), b...))
		}
	}
	add("tenant", f.Tenant)
	add("agent", f.Agent)
	add("ticket_id", f.Ticket)
	if f.Principal != "" {
		b, _ := json.Marshal(f.Principal)
		pre = append(pre, b)
	}
	return pre
}

// Get answers one record.
func (l *Log) Get(ctx context.Context, id string) (*audit.Record, error) {
	notFound := fmt.Errorf("audit record %q: %w", id, clearance.ErrNotFound)
	if !audit.ValidID(id) {
		return nil, notFound
	}
	segs, err := l.snapshot()
	if err != nil {
		return nil, err
	}
	for i := len(segs) - 1; i >= 0; i-- {
		if segs[i].firstID == "" || segs[i].firstID > id {
			continue
		}
		data, err := readSegment(segs[i])
		if err != nil {
			return nil, err
		}
		for _, line := range lines(data) {
			if got, ok := lineID(line); ok && got == id {
				var r audit.Record
				if err := json.Unmarshal(line, &r); err != nil {
					return nil, fmt.Errorf("audit record %q is corrupt: %w", id, err)
				}
				return &r, nil
			}
		}
		break
	}
	return nil, notFound
}

// Verify walks every segment in order from the checkpoint (or the genesis) and
// reports the first break; a torn last line is reported as TornTail.
func (l *Log) Verify(ctx context.Context) (audit.VerifyReport, error) {
	cp, err := l.readCheckpoint()
	if err != nil {
		return audit.VerifyReport{}, err
	}
	v := audit.NewVerifier(cp)
	if cp != nil {
		var trusted ed25519.PublicKey
		if key, err := audit.LoadKey(l.keyPath(), false); err == nil {
			trusted = key.Public().(ed25519.PublicKey)
		}
		if err := cp.Check(trusted); err != nil {
			v.Fail(audit.BadCheckpoint, cp.ID, err.Error())
			return v.Report(), nil
		}
	}
	segs, err := l.snapshot()
	if err != nil {
		return audit.VerifyReport{}, err
	}
	for i, s := range segs {
		data, err := readSegment(s)
		if err != nil {
			return audit.VerifyReport{}, err
		}
		end := int64(len(data))
		if i == len(segs)-1 {
			end, _ = validEnd(data)
			if torn := tornBytes(data, end); torn > 0 {
				v.Torn(audit.TornTail{Segment: filepath.Base(s.path), Offset: end, Bytes: torn})
			}
		}
		for _, line := range lines(data[:end]) {
			v.Add(line)
			if v.Done() {
				return v.Report(), nil
			}
		}
		if err := ctx.Err(); err != nil {
			return audit.VerifyReport{}, err
		}
	}
	return v.Report(), nil
}

func (l *Log) readCheckpoint() (*audit.Checkpoint, error) {
	b, err := os.ReadFile(l.checkpointPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint: %w", err)
	}
	var cp audit.Checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, fmt.Errorf("audit: checkpoint %s: %w", l.checkpointPath(), err)
	}
	return &cp, nil
}

// Prune deletes the oldest segments whose records are all older than before,
// after writing a signed checkpoint of the last record they hold. The active
// segment is never pruned. It returns the new checkpoint (nil: nothing pruned).
func (l *Log) Prune(ctx context.Context, before time.Time) (*audit.Checkpoint, error) {
	if l.committer == nil {
		return nil, fmt.Errorf("%w: opened read-only", audit.ErrUnavailable)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	prev, err := l.readCheckpoint()
	if err != nil {
		return nil, err
	}
	var floor string
	var pruned int64
	if prev != nil {
		floor, pruned = prev.ID, prev.Records
	}
	cut := -1
	var last link
	for i := 0; i < len(l.segs)-1; i++ {
		data, err := readSegment(l.segs[i])
		if err != nil {
			return nil, err
		}
		var n int64
		var lk link
		for _, line := range lines(data) {
			if json.Unmarshal(line, &lk) != nil || lk.ID <= floor {
				continue
			}
			n++
		}
		if n > 0 && !lk.Time.Before(before) {
			break
		}
		if n > 0 {
			last = lk
		}
		cut, pruned = i, pruned+n
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	if cut < 0 || last.ID == "" {
		return nil, nil
	}
	key, err := audit.LoadKey(l.keyPath(), true)
	if err != nil {
		return nil, err
	}
	cp := &audit.Checkpoint{ID: last.ID, Hash: last.Hash, Time: last.Time, Records: pruned, Created: l.cfg.Now().UTC()}
	if err := cp.Sign(key); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return nil, err
	}
	// Checkpoint first: a crash before the deletes leaves records the verifier
	// skips (ids up to the checkpoint's).
	if err := audit.WriteFileAtomic(l.checkpointPath(), append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("%w: checkpoint: %v", audit.ErrUnavailable, err)
	}
	for _, s := range l.segs[:cut+1] {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("audit: prune: %w", err)
		}
	}
	if err := audit.SyncDir(l.segDir()); err != nil {
		return nil, fmt.Errorf("audit: prune: %w", err)
	}
	l.log.Info("audit: pruned segments", "segments", cut+1, "records_pruned_total", pruned, "checkpoint", cp.ID, "before", before)
	l.segs = slices.Clone(l.segs[cut+1:])
	return cp, nil
}

func (l *Log) retain() {
	defer l.wg.Done()
	commit.Retain(l.stop, l.cfg.RetentionInterval, l.cfg.Retention, l.cfg.Now, l.Prune, l.log)
}

// Close writes what is queued and releases the directory.
func (l *Log) Close() error {
	if l.committer == nil {
		return nil
	}
	l.closeOnce.Do(func() {
		l.committer.Close()
		close(l.stop)
		l.wg.Wait()
		l.mu.Lock()
		defer l.mu.Unlock()
		l.closeErr = l.f.Close()
		l.lock.Close()
	})
	return l.closeErr
}
