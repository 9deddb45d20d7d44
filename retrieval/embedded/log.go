package embedded

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"time"
	"unsafe"

	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/lexical"
)

// Records. Both the write-ahead log and snapshots are sequences of framed
// records: 4 bytes payload length, 4 bytes CRC-32C of the payload, payload (all
// little endian). A ticket write is exactly one record, so a torn write at the
// tail is a bad frame that recovery cuts off: the ticket stays in its old state.
const (
	opUpsert   byte = 1
	opDelete   byte = 2
	opMove     byte = 3
	opSnapshot byte = 4 // snapshot header: meta and partition sizes
	opEnd      byte = 5 // snapshot trailer: counts, proves the snapshot complete

	frameHeader = 8
	maxRecord   = 1 << 30
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// frame appends a framed record to dst.
func frame(dst, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(payload, crcTable))
	return append(dst, payload...)
}

// errTorn marks the end of the readable part of a log: a short or corrupt frame.
var errTorn = errors.New("torn or corrupt record")

// recordReader reads framed records; off is the offset after the last good one.
type recordReader struct {
	r   *bufio.Reader
	buf []byte
	off int64
}

func newRecordReader(r io.Reader) *recordReader {
	return &recordReader{r: bufio.NewReaderSize(r, 1<<20)}
}

// next returns the next payload (valid until the following call), io.EOF at a
// clean end, or errTorn.
func (rr *recordReader) next() ([]byte, error) {
	var h [frameHeader]byte
	n, err := io.ReadFull(rr.r, h[:])
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		if n > 0 && errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errTorn
		}
		return nil, err
	}
	size := binary.LittleEndian.Uint32(h[:4])
	if size == 0 || size > maxRecord {
		return nil, errTorn
	}
	if cap(rr.buf) < int(size) {
		rr.buf = make([]byte, size)
	}
	p := rr.buf[:size]
	if _, err := io.ReadFull(rr.r, p); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
			return nil, errTorn
		}
		return nil, err
	}
	if crc32.Checksum(p, crcTable) != binary.LittleEndian.Uint32(h[4:]) {
		return nil, errTorn
	}
	rr.off += frameHeader + int64(size)
	return p, nil
}

// encoder builds record payloads.
type encoder struct{ b []byte }

func (e *encoder) byte(c byte)        { e.b = append(e.b, c) }
func (e *encoder) uint(u uint64)      { e.b = binary.AppendUvarint(e.b, u) }
func (e *encoder) int(i int64)        { e.b = binary.AppendVarint(e.b, i) }
func (e *encoder) str(s string)       { e.uint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) floats(v []float32) { e.b = append(e.b, floatBytes(v)...) }

// decoder reads record payloads; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errTorn
	}
	d.b = nil
}

func (d *decoder) uint() uint64 {
	u, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return u
}

func (d *decoder) int() int64 {
	i, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return i
}

func (d *decoder) str() string {
	n := d.uint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// floats decodes n float32s into dst (grown as needed).
func (d *decoder) floats(dst []float32, n int) []float32 {
	if n < 0 || n > len(d.b)/4 {
		d.fail()
		return dst[:0]
	}
	if cap(dst) < n {
		dst = make([]float32, n)
	}
	dst = dst[:n]
	copy(floatBytes(dst), d.b[:4*n])
	d.b = d.b[4*n:]
	return dst
}

// floatBytes views a float32 slice as its little-endian bytes. The store runs
// on little-endian machines only (checked in Open).
func floatBytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

func littleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

// upsertRecord is a decoded (or to be encoded) ticket write.
type upsertRecord struct {
	t     retrieval.Ticket
	ords  []int32
	texts []string
	vecs  []float32 // len(ords)*dim
	// docs are the chunks' lexical documents, analyzed before the write lock
	// (never logged: replay analyzes the texts again).
	docs []lexical.Doc
}

func encodeUpsert(u *upsertRecord) []byte {
	e := encoder{b: make([]byte, 0, 64+len(u.t.Title)+len(u.t.Body)+4*len(u.vecs)+16*len(u.ords))}
	e.byte(opUpsert)
	e.str(u.t.ID)
	e.str(u.t.Tenant)
	e.str(u.t.Project)
	e.str(u.t.Title)
	e.str(u.t.Body)
	e.int(u.t.UpdatedAt.UnixNano())
	e.str(u.t.ContentHash)
	e.uint(uint64(len(u.ords)))
	for i, o := range u.ords {
		e.uint(uint64(o))
		e.str(u.texts[i])
	}
	e.floats(u.vecs)
	return e.b
}

// decodeUpsert decodes the payload after the op byte; vecs reuses scratch.
func decodeUpsert(d *decoder, dim int, scratch []float32) (*upsertRecord, error) {
	u := &upsertRecord{}
	u.t.ID = d.str()
	u.t.Tenant = d.str()
	u.t.Project = d.str()
	u.t.Title = d.str()
	u.t.Body = d.str()
	if ns := d.int(); ns != 0 {
		u.t.UpdatedAt = time.Unix(0, ns).UTC()
	}
	u.t.ContentHash = d.str()
	n := d.uint()
	if n > uint64(len(d.b)) { // each chunk takes at least a byte
		d.fail()
		return nil, d.err
	}
	u.ords = make([]int32, n)
	u.texts = make([]string, n)
	for i := range u.ords {
		o := d.uint()
		if o > math.MaxInt32 {
			d.fail()
		}
		u.ords[i] = int32(o)
		u.texts[i] = d.str()
	}
	u.vecs = d.floats(scratch, int(n)*dim)
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	return u, d.err
}

func encodeDelete(id string) []byte {
	e := encoder{}
	e.byte(opDelete)
	e.str(id)
	return e.b
}

func encodeMove(id, project string) []byte {
	e := encoder{}
	e.byte(opMove)
	e.str(id)
	e.str(project)
	return e.b
}

// apply replays one log payload onto ix.
func apply(ix *index, payload []byte, scratch *[]float32) error {
	d := &decoder{b: payload[1:]}
	switch payload[0] {
	case opUpsert:
		u, err := decodeUpsert(d, ix.dim, *scratch)
		if err != nil {
			return err
		}
		*scratch = u.vecs
		ix.upsert(u.t, u.ords, u.texts, u.vecs, nil, int64(len(payload)+frameHeader))
	case opDelete:
		id := d.str()
		if d.err != nil {
			return d.err
		}
		ix.remove(id)
	case opMove:
		id, project := d.str(), d.str()
		if d.err != nil {
			return d.err
		}
		ix.move(id, project)
	default:
		return fmt.Errorf("unknown record type %d: %w", payload[0], errTorn)
	}
	return nil
}
