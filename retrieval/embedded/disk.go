package embedded

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/clearance-dev/clearance/internal/dirlock"
	"github.com/clearance-dev/clearance/retrieval"
)

// Files in the data directory:
//
//	LOCK                  flock'ed while a process has the store open
//	index.json            embedding model and dimension (IndexMeta)
//	snap-<seq>.log        snapshot: header, one upsert per ticket, trailer
//	wal-<seq>.log         write-ahead log of writes after snap-<seq>
//
// A compaction writes snap-<seq+1> (to a .tmp name, fsync, rename), starts
// wal-<seq+1>, then removes the older pair. Whatever moment a crash hits, the
// newest complete snapshot plus the logs from its sequence on describe every
// acknowledged write.
const (
	metaFile  = "index.json"
	lockFile  = "LOCK"
	formatVer = 1
)

type metaDoc struct {
	Format int    `json:"format"`
	Model  string `json:"model"`
	Dim    int    `json:"dim"`
}

// disk is the persistent side of a store.
type disk struct {
	dir      string
	log      *slog.Logger
	noSync   bool
	lock     *os.File
	wal      *os.File
	seq      uint64 // sequence of the current snapshot/wal pair
	walBytes int64
	// failed is set when a log write could not be undone; writes then refuse.
	failed error
}

func fileName(kind string, seq uint64) string { return fmt.Sprintf("%s-%016x.log", kind, seq) }

// openDisk locks dir, checks or writes its metadata and loads the index.
func openDisk(dir string, meta retrieval.IndexMeta, ix *index, log *slog.Logger, noSync bool) (*disk, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded store: %w: %w", retrieval.ErrUnavailable, err)
	}
	lock, err := dirlock.Acquire(filepath.Join(dir, lockFile), "data dir")
	if err != nil {
		return nil, fmt.Errorf("embedded store %s: %w: %w", dir, retrieval.ErrUnavailable, err)
	}
	d := &disk{dir: dir, log: log, noSync: noSync, lock: lock}
	if err := d.load(meta, ix); err != nil {
		lock.Close()
		return nil, err
	}
	return d, nil
}

func (d *disk) load(meta retrieval.IndexMeta, ix *index) error {
	snaps, wals, err := d.list()
	if err != nil {
		return err
	}
	if err := d.checkMeta(meta, len(snaps)+len(wals) > 0); err != nil {
		return err
	}
	if len(snaps) > 0 {
		d.seq = snaps[len(snaps)-1]
		if err := d.loadSnapshot(filepath.Join(d.dir, fileName("snap", d.seq)), ix); err != nil {
			return err
		}
	}
	var replay []uint64
	for _, w := range wals {
		if w >= d.seq {
			replay = append(replay, w)
		}
	}
	var scratch []float32
	for i, w := range replay {
		last := i == len(replay)-1
		if err := d.replay(w, ix, last, &scratch); err != nil {
			return err
		}
		d.seq = w
	}
	if len(replay) == 0 {
		if err := d.createWAL(d.seq); err != nil {
			return err
		}
	}
	d.removeOld()
	return nil
}

// list returns the sequences of snapshots and logs, ascending.
func (d *disk) list() (snaps, wals []uint64, err error) {
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("embedded store: %w: %w", retrieval.ErrUnavailable, err)
	}
	for _, e := range ents {
		var seq uint64
		switch name := e.Name(); {
		case strings.HasSuffix(name, ".tmp"):
			os.Remove(filepath.Join(d.dir, name)) // an unfinished compaction
		case scan(name, "snap-%016x.log", &seq):
			snaps = append(snaps, seq)
		case scan(name, "wal-%016x.log", &seq):
			wals = append(wals, seq)
		}
	}
	slices.Sort(snaps)
	slices.Sort(wals)
	return snaps, wals, nil
}

func scan(name, format string, seq *uint64) bool {
	n, err := fmt.Sscanf(name, format, seq)
	return err == nil && n == 1 && name == fmt.Sprintf(format, *seq)
}

func (d *disk) checkMeta(meta retrieval.IndexMeta, hasData bool) error {
	path := filepath.Join(d.dir, metaFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if hasData {
			return fmt.Errorf("embedded store %s: data files without %s: %w", d.dir, metaFile, retrieval.ErrUnavailable)
		}
		b, _ := json.MarshalIndent(metaDoc{Format: formatVer, Model: meta.Model, Dim: meta.Dim}, "", "  ")
		return d.writeFileAtomic(metaFile, append(b, '\n'))
	}
	if err != nil {
		return fmt.Errorf("embedded store: %w: %w", retrieval.ErrUnavailable, err)
	}
	var m metaDoc
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("embedded store: %s: %w: %w", path, retrieval.ErrUnavailable, err)
	}
	if m.Format != formatVer {
		return fmt.Errorf("embedded store %s: format %d, this build reads %d: %w", d.dir, m.Format, formatVer, retrieval.ErrUnavailable)
	}
	if m.Model != meta.Model || m.Dim != meta.Dim {
		return fmt.Errorf("%w: %s holds model %q with %d dimensions, opened with model %q with %d (re-index into a new data dir)",
			retrieval.ErrIndexMismatch, d.dir, m.Model, m.Dim, meta.Model, meta.Dim)
	}
	return nil
}

// writeFileAtomic writes name via a temporary file, fsync and rename.
func (d *disk) writeFileAtomic(name string, data []byte) error {
	tmp := filepath.Join(d.dir, name+".tmp")
	err := os.WriteFile(tmp, data, 0o640)
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(d.dir, name))
	}
	if err == nil {
		err = syncDir(d.dir)
	}
	if err != nil {
		return fmt.Errorf("embedded store: %w: %w", retrieval.ErrUnavailable, err)
	}
	return nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func syncDir(dir string) error { return syncFile(dir) }

// loadSnapshot reads a complete snapshot; anything less is an error, because
// snapshots only appear (by rename) once fully written and synced.
func (d *disk) loadSnapshot(path string, ix *index) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("embedded store: %w: %w", retrieval.ErrUnavailable, err)
	}
	defer f.Close()
	bad := func(why string) error {
		return fmt.Errorf("embedded store: snapshot %s is damaged (%s): %w", path, why, retrieval.ErrUnavailable)
	}
	rr := newRecordReader(f)
	p, err := rr.next()
	if err != nil || p[0] != opSnapshot {
		return bad("no header")
	}
	dec := &decoder{b: p[1:]}
	for n := dec.uint(); n > 0 && dec.err == nil; n-- {
		tenant, project, rows := dec.str(), dec.str(), dec.uint()
		if rows > uint64(maxRecord) {
			dec.fail()
			break
		}
		ix.reserve(tenant, project, int(rows))
	}
	if dec.err != nil {
		return bad("bad header")
	}
	var scratch []float32
	b := newUpsertBatch(ix)
	for {
		p, err := rr.next()
		if err != nil {
			return bad(err.Error())
		}
		if p[0] == opUpsert {
			if err := b.add(p); err != nil {
				return bad(err.Error())
			}
			continue
		}
		b.flush()
		if p[0] == opEnd {
			dec := &decoder{b: p[1:]}
			tickets, chunks := dec.uint(), dec.uint()
			if dec.err != nil || tickets != uint64(len(ix.tickets)) || chunks != uint64(ix.chunks) {
				return bad("counts differ from trailer")
			}
			return nil
		}
		if err := apply(ix, p, &scratch); err != nil {
			return bad(err.Error())
		}
	}
}

// upsertBatch applies the upserts of a snapshot or log in order, analyzing
// each batch's text for the lexical arm on all cores first: analysis is most
// of a load's CPU once the vectors are copied, and files are read by one
// goroutine. Only decoding can fail, and it fails in add, before anything
// later is applied, so a bad record still cuts the load exactly where it is.
type upsertBatch struct {
	ix      *index
	n       int
	recs    []*upsertRecord
	sizes   []int64
	scratch [][]float32 // per slot, reused across batches (upsert copies vectors)
}

const upsertBatchSize = 256

func newUpsertBatch(ix *index) *upsertBatch {
	return &upsertBatch{ix: ix, recs: make([]*upsertRecord, upsertBatchSize),
		sizes: make([]int64, upsertBatchSize), scratch: make([][]float32, upsertBatchSize)}
}

// add decodes one upsert payload (copied out: the reader reuses its buffer).
func (b *upsertBatch) add(payload []byte) error {
	u, err := decodeUpsert(&decoder{b: payload[1:]}, b.ix.dim, b.scratch[b.n])
	if err != nil {
		return err
	}
	b.scratch[b.n] = u.vecs
	b.recs[b.n], b.sizes[b.n] = u, int64(len(payload)+frameHeader)
	if b.n++; b.n == upsertBatchSize {
		b.flush()
	}
	return nil
}

func (b *upsertBatch) flush() {
	recs := b.recs[:b.n]
	workers := min(runtime.GOMAXPROCS(0), len(recs))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(recs); i += workers {
				recs[i].docs = lexDocs(recs[i].t, recs[i].texts)
			}
		})
	}
	wg.Wait()
	for i, u := range recs {
		b.ix.upsert(u.t, u.ords, u.texts, u.vecs, u.docs, b.sizes[i])
		recs[i] = nil
	}
	b.n = 0
}

// replay applies a log. In the newest log a torn tail (the write a crash
// interrupted) is cut off; in an older one it is an error.
func (d *disk) replay(seq uint64, ix *index, newest bool, scratch *[]float32) error {
	path := filepath.Join(d.dir, fileName("wal", seq))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("embedded store: %w: %w", retrieval.ErrUnavailable, err)
	}
	rr := newRecordReader(f)
	records := 0
	b := newUpsertBatch(ix)
	defer b.flush() // every record added before a failure is applied, as before
	for {
		start := rr.off
		p, err := rr.next()
		if err == io.EOF {
			break
		}
		if err == nil {
			if p[0] == opUpsert {
				err = b.add(p)
			} else {
				b.flush()
				err = apply(ix, p, scratch)
			}
		}
		if err != nil {
			rr.off = start // cut before the record that failed
		}
		if errors.Is(err, errTorn) && newest {
			st, serr := f.Stat()
			if serr != nil {
				f.Close()
				return fmt.Errorf("embedded store: %w: %w", retrieval.ErrUnavailable, serr)
			}
			d.log.Warn("embedded store: cutting off a torn write at the end of the log",
				"file", path, "offset", rr.off, "discarded_bytes", st.Size()-rr.off)
			if err := f.Truncate(rr.off); err != nil {
				f.Close()
				return fmt.Errorf("embedded store: %w: %w", retrieval.ErrUnavailable, err)
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return fmt.Errorf("embedded store: %w: %w", retrieval.ErrUnavailable, err)
			}
			break
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("embedded store: log %s damaged at offset %d: %w: %w", path, rr.off, retrieval.ErrUnavailable, err)
		}
		records++
	}
	if !newest {
		return f.Close()
	}
	if _, err := f.Seek(rr.off, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("embedded store: %w: %w", retrieval.ErrUnavailable, err)
	}
	d.wal, d.walBytes = f, rr.off
	d.log.Debug("embedded store: replayed log", "file", path, "records", records, "bytes", rr.off)
	return nil
}

func (d *disk) createWAL(seq uint64) error {
	f, err := os.OpenFile(filepath.Join(d.dir, fileName("wal", seq)), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err == nil {
		err = syncDir(d.dir)
	}
	if err != nil {
		return fmt.Errorf("embedded store: %w: %w", retrieval.ErrUnavailable, err)
	}
	d.wal, d.seq, d.walBytes = f, seq, 0
	return nil
}

// removeOld deletes snapshots and logs older than the current sequence.
func (d *disk) removeOld() {
	snaps, wals, err := d.list()
	if err != nil {
		return
	}
	for _, s := range snaps {
		if s < d.seq {
			os.Remove(filepath.Join(d.dir, fileName("snap", s)))
		}
	}
	for _, w := range wals {
		if w < d.seq {
			os.Remove(filepath.Join(d.dir, fileName("wal", w)))
		}
	}
}

// append writes framed records to the log with one write and, unless noSync,
// fsyncs them. A failed write is cut off again so the log never holds a torn
// record followed by good ones; if even that fails the log is marked failed and
// refuses writes.
func (d *disk) append(framed []byte) error {
	if d.failed != nil {
		return fmt.Errorf("embedded store: log unusable after an earlier error: %w: %w", retrieval.ErrUnavailable, d.failed)
	}
	_, err := d.wal.Write(framed)
	if err == nil && !d.noSync {
		err = d.wal.Sync()
	}
	if err != nil {
		if terr := d.wal.Truncate(d.walBytes); terr != nil {
			d.failed = terr
		} else if _, serr := d.wal.Seek(d.walBytes, io.SeekStart); serr != nil {
			d.failed = serr
		}
		return fmt.Errorf("embedded store: writing the log: %w: %w", retrieval.ErrUnavailable, err)
	}
	d.walBytes += int64(len(framed))
	return nil
}

// snapshot writes the whole index as snap-<seq+1>, starts wal-<seq+1> and
// removes the old pair. The caller holds the writer lock and a read lock.
func (d *disk) snapshot(ix *index) error {
	next := d.seq + 1
	name := fileName("snap", next)
	tmp := filepath.Join(d.dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("embedded store: snapshot: %w: %w", retrieval.ErrUnavailable, err)
	}
	err = writeSnapshot(f, ix)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(d.dir, name))
	}
	if err == nil {
		err = syncDir(d.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("embedded store: snapshot: %w: %w", retrieval.ErrUnavailable, err)
	}
	old := d.wal
	if err := d.createWAL(next); err != nil {
		// The snapshot is in place; the old log stays open and keeps working
		// until the next attempt (a reopen replays from the new snapshot on).
		d.failed = err
		return err
	}
	old.Close()
	d.removeOld()
	return nil
}

// writeSnapshot writes the header (partition sizes, so loading allocates each
// slab once), one upsert record per ticket grouped by partition, and the trailer.
func writeSnapshot(f *os.File, ix *index) error {
	w := bufio.NewWriterSize(f, 4<<20)
	type part struct {
		p  *partition
		ts []*ticket
	}
	var parts []*part
	byPart := map[*partition]*part{}
	for _, tk := range ix.tickets {
		pp := byPart[tk.part]
		if pp == nil {
			pp = &part{p: tk.part}
			byPart[tk.part] = pp
			parts = append(parts, pp)
		}
		pp.ts = append(pp.ts, tk)
	}
	slices.SortFunc(parts, func(a, b *part) int {
		return cmp.Or(strings.Compare(a.p.tenant, b.p.tenant), strings.Compare(a.p.project, b.p.project))
	})
	e := encoder{}
	e.byte(opSnapshot)
	e.uint(uint64(len(parts)))
	for _, pp := range parts {
		e.str(pp.p.tenant)
		e.str(pp.p.project)
		e.uint(uint64(len(pp.p.rows)))
	}
	buf := frame(nil, e.b)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	for _, pp := range parts {
		for _, tk := range pp.ts {
			rec := encodeUpsert(&upsertRecord{t: tk.Ticket, ords: tk.ords, texts: tk.texts, vecs: ix.vectors(tk)})
			buf = frame(buf[:0], rec)
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
	}
	e = encoder{}
	e.byte(opEnd)
	e.uint(uint64(len(ix.tickets)))
	e.uint(uint64(ix.chunks))
	if _, err := w.Write(frame(nil, e.b)); err != nil {
		return err
	}
	return w.Flush()
}

func (d *disk) close() error {
	var err error
	if d.noSync {
		err = d.wal.Sync()
	}
	if cerr := d.wal.Close(); err == nil {
		err = cerr
	}
	d.lock.Close() // releases the flock
	return err
}
