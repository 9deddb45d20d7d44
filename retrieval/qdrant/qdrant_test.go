package qdrant_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/clearance-dev/clearance/internal/testenv"
	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/qdrant"
	"github.com/clearance-dev/clearance/retrieval/storetest"
)

// TestConformance runs the store suite against the Qdrant server at QDRANT_URL
// (skipped without one). Each store gets its own pair of collections, dropped
// when the test ends. Exact search, so rankings match the brute-force reference.
func TestConformance(t *testing.T) {
	url := testenv.QdrantURL(t)
	prefixes := map[retrieval.Store]string{}
	open := func(t *testing.T, prefix string, meta retrieval.IndexMeta) (*qdrant.Store, error) {
		return qdrant.Open(context.Background(), qdrant.Config{URL: url, Collection: prefix, Meta: meta, Exact: true})
	}
	storetest.Run(t, func(t *testing.T, meta retrieval.IndexMeta) retrieval.Store {
		var b [6]byte
		_, _ = rand.Read(b[:])
		prefix := "clearance_test_" + hex.EncodeToString(b[:])
		s, err := open(t, prefix, meta)
		if err != nil {
			t.Fatal(err)
		}
		prefixes[s] = prefix
		t.Cleanup(func() {
			d, err := open(t, prefix, meta)
			if err == nil {
				_ = d.Drop(context.Background())
				d.Close()
			}
		})
		return s
	}, storetest.Options{
		Reopen: func(t *testing.T, closed retrieval.Store, meta retrieval.IndexMeta) (retrieval.Store, error) {
			s, err := open(t, prefixes[closed], meta)
			if err != nil {
				return nil, err
			}
			prefixes[s] = prefixes[closed]
			return s, nil
		},
	})
}
