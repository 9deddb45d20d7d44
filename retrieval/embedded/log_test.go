package embedded

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/retrieval"
)

// FuzzApply feeds arbitrary payloads to the log decoder: a damaged record must
// be an error (or a valid write), never a panic or a half-applied ticket.
func FuzzApply(f *testing.F) {
	f.Add(encodeUpsert(&upsertRecord{
		t:     retrieval.Ticket{ID: "T", Tenant: "a", Project: "p", Title: "t", Body: "b", UpdatedAt: time.Unix(5, 0)},
		ords:  []int32{0, 3},
		texts: []string{"x", "y"},
		vecs:  []float32{1, 0, 0, 0, 0, 1},
	}))
	f.Add(encodeDelete("T"))
	f.Add(encodeMove("T", "q"))
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) == 0 {
			return
		}
		ix := newIndex(3, true)
		var scratch []float32
		err := apply(ix, payload, &scratch)
		if err != nil && !errors.Is(err, errTorn) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		for _, tk := range ix.tickets {
			if len(tk.rows) != len(tk.ords) || len(tk.texts) != len(tk.ords) {
				t.Fatalf("half-applied ticket: %d rows, %d ordinals, %d texts", len(tk.rows), len(tk.ords), len(tk.texts))
			}
		}
		// Framed, the same bytes read back intact; one flipped bit is caught.
		rr := newRecordReader(bytes.NewReader(frame(nil, payload)))
		if got, err := rr.next(); err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("round trip: %v", err)
		}
		bad := frame(nil, payload)
		bad[len(bad)-1] ^= 1
		if _, err := newRecordReader(bytes.NewReader(bad)).next(); !errors.Is(err, errTorn) {
			t.Fatalf("flipped bit not detected: %v", err)
		}
		if _, err := rr.next(); err != io.EOF {
			t.Fatalf("after the only record: %v", err)
		}
	})
}
