package indexer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/clearance-dev/clearance"
)

// maxLineBytes bounds one JSONL line: the largest body plus room for the other
// fields and JSON escaping.
const maxLineBytes = 2*MaxBodyBytes + 64<<10

// JSONLConfig configures a JSONL source.
type JSONLConfig struct {
	// Path is a .jsonl file, or a directory whose *.jsonl and *.ndjson files
	// (recursively, in lexical order) are read.
	Path string
	// BatchSize is the number of lines per batch (default 256).
	BatchSize int
	// Map renames the members of each line to ticket fields (nil: the lines
	// use the ticket fields' names).
	Map *FieldMap
}

// JSONL reads tickets from JSONL files, one object per line (SPEC 10).
//
// A file is read to its end on every run; incremental work is avoided by the
// content hash, not by skipping rows, because an exported file has no reliable
// order. The watermark records, per file, its size and modification time and the
// last durably indexed line: an unchanged file resumes after that line (a run
// killed half way continues where it stopped; a finished file is skipped), a
// changed file is read again from the start.
type JSONL struct {
	cfg  JSONLConfig
	root string
}

// NewJSONL checks that the path exists and returns the source.
func NewJSONL(cfg JSONLConfig) (*JSONL, error) {
	abs, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("jsonl source: %w", err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("jsonl source: %w", err)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 256
	}
	return &JSONL{cfg: cfg, root: abs}, nil
}

// Name implements Source.
// With a field map the name carries it: another mapping reads the files again
// instead of resuming the previous mapping's watermark.
func (s *JSONL) Name() string {
	if s.cfg.Map != nil {
		return "jsonl:" + s.root + "?map=" + s.cfg.Map.String()
	}
	return "jsonl:" + s.root
}

// jsonlMark is the watermark of one file.
type jsonlMark struct {
	Size    int64 `json:"size"`
	ModTime int64 `json:"mtime"`
	Line    int   `json:"line"`
	Offset  int64 `json:"offset"`
}

type jsonlWatermark struct {
	Files map[string]jsonlMark `json:"files"`
}

func (s *JSONL) files() ([]string, error) {
	st, err := os.Stat(s.root)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{s.root}, nil
	}
	var out []string
	err = filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".jsonl") || strings.HasSuffix(p, ".ndjson")) {
			out = append(out, p)
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

func parseJSONLWatermark(since string) (jsonlWatermark, error) {
	var wm jsonlWatermark
	if since != "" {
		if err := json.Unmarshal([]byte(since), &wm); err != nil {
			return wm, fmt.Errorf("jsonl source: bad watermark: %w", err)
		}
	}
	return wm, nil
}

// Read implements Source.
func (s *JSONL) Read(ctx context.Context, since string) iter.Seq2[Batch, error] {
	return func(yield func(Batch, error) bool) {
		old, err := parseJSONLWatermark(since)
		if err != nil {
			yield(Batch{}, err)
			return
		}
		files, err := s.files()
		if err != nil {
			yield(Batch{}, fmt.Errorf("jsonl source: %w", err))
			return
		}
		wm := jsonlWatermark{Files: map[string]jsonlMark{}}
		for _, f := range files {
			if m, ok := old.Files[s.rel(f)]; ok {
				wm.Files[s.rel(f)] = m
			}
		}
		for _, f := range files {
			if !s.readFile(ctx, f, &wm, yield) {
				return
			}
		}
	}
}

func (s *JSONL) rel(path string) string {
	if r, err := filepath.Rel(s.root, path); err == nil && r != "." {
		return r
	}
	return filepath.Base(path)
}

// readFile yields the batches of one file; false means stop.
func (s *JSONL) readFile(ctx context.Context, path string, wm *jsonlWatermark, yield func(Batch, error) bool) bool {
	fail := func(err error) bool {
		yield(Batch{}, fmt.Errorf("jsonl source %s: %w", path, err))
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	name := s.rel(path)
	mark := jsonlMark{Size: st.Size(), ModTime: st.ModTime().UnixNano()}
	if prev, ok := wm.Files[name]; ok && prev.Size == mark.Size && prev.ModTime == mark.ModTime {
		mark = prev
		if mark.Offset >= mark.Size {
			return true // indexed to its end and unchanged since
		}
		if _, err := f.Seek(mark.Offset, io.SeekStart); err != nil {
			return fail(err)
		}
	} else {
		mark.Line, mark.Offset = 0, 0
	}
	return s.readLines(ctx, f, name, mark, wm, yield)
}

// readLines yields the batches of one file read from mark on; false means stop.
func (s *JSONL) readLines(ctx context.Context, in io.Reader, name string, mark jsonlMark, wm *jsonlWatermark, yield func(Batch, error) bool) bool {
	fail := func(err error) bool {
		yield(Batch{}, fmt.Errorf("jsonl source %s: %w", name, err))
		return false
	}
	r := bufio.NewReaderSize(in, 256<<10)
	var rows []SourceRow
	flush := func() bool {
		wm.Files[name] = mark
		b, err := json.Marshal(wm)
		if err != nil {
			return fail(err)
		}
		batch := Batch{Rows: rows, Watermark: string(b)}
		rows = nil
		return yield(batch, nil)
	}
	for {
		if err := ctx.Err(); err != nil {
			yield(Batch{}, err)
			return false
		}
		line, n, tooLong, err := readLine(r)
		if err != nil && !errors.Is(err, io.EOF) {
			return fail(err)
		}
		if n == 0 && errors.Is(err, io.EOF) {
			break
		}
		mark.Line++
		mark.Offset += int64(n)
		ref := fmt.Sprintf("%s:%d", name, mark.Line)
		switch {
		case tooLong:
			rows = append(rows, SourceRow{Ref: ref, Err: fmt.Errorf("%w: line is longer than %d bytes", clearance.ErrTooLarge, maxLineBytes)})
		case len(bytes.TrimSpace(line)) == 0:
			// Blank lines carry nothing; they still advance the watermark.
		default:
			row, derr := DecodeMapped(line, s.cfg.Map)
			rows = append(rows, SourceRow{Row: row, Ref: ref, Err: derr})
		}
		if len(rows) >= s.cfg.BatchSize {
			if !flush() {
				return false
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	// The file's last batch also records that it was read to the end, even
	// when it holds no rows (a file of blank lines).
	mark.Offset = max(mark.Offset, mark.Size)
	return flush()
}

// readLine reads one line (without its newline) and the number of bytes it
// took. A line over maxLineBytes is consumed and reported as tooLong.
func readLine(r *bufio.Reader) (line []byte, n int, tooLong bool, err error) {
	var buf []byte
	for {
		frag, err := r.ReadSlice('\n')
		n += len(frag)
		if !tooLong {
			if len(buf)+len(frag) > maxLineBytes {
				tooLong, buf = true, nil
			} else {
				buf = append(buf, frag...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimSuffix(buf, []byte("\n")), n, tooLong, err
	}
}

// NewJSONLData returns a source over JSONL held in memory (the demo's embedded
// tickets); name identifies it in the sync state and in row references.
func NewJSONLData(name string, data []byte, batchSize int) *JSONLData {
	if batchSize <= 0 {
		batchSize = 256
	}
	return &JSONLData{s: &JSONL{cfg: JSONLConfig{BatchSize: batchSize}, root: name}, data: data}
}

// JSONLData is a JSONL source over a byte slice.
type JSONLData struct {
	s    *JSONL
	data []byte
}

// Name implements Source.
func (d *JSONLData) Name() string { return "jsonl-data:" + d.s.root }

// Read implements Source.
func (d *JSONLData) Read(ctx context.Context, since string) iter.Seq2[Batch, error] {
	return func(yield func(Batch, error) bool) {
		old, err := parseJSONLWatermark(since)
		if err != nil {
			yield(Batch{}, err)
			return
		}
		h := fnv.New64a()
		h.Write(d.data)
		// The content hash stands in for the file's modification time.
		mark := jsonlMark{Size: int64(len(d.data)), ModTime: int64(h.Sum64())}
		if prev, ok := old.Files[d.s.root]; ok && prev.Size == mark.Size && prev.ModTime == mark.ModTime {
			mark = prev
		}
		if mark.Offset >= mark.Size && mark.Size > 0 {
			return
		}
		wm := jsonlWatermark{Files: map[string]jsonlMark{}}
		d.s.readLines(ctx, bytes.NewReader(d.data[mark.Offset:]), d.s.root, mark, &wm, yield)
	}
}
