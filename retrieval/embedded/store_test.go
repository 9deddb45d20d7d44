package embedded

import (
	"testing"

	"github.com/clearance-dev/clearance/retrieval"
	"github.com/clearance-dev/clearance/retrieval/storetest"
)

func openMem(cfg Config) storetest.Opener {
	return func(t *testing.T, meta retrieval.IndexMeta) retrieval.Store {
		cfg.Meta = meta
		s, err := Open(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		smallScans(s)
		return s
	}
}

// smallScans makes a quantized store use its int8 pass and parallel split even
// on the suite's small data, so those paths face the suite too.
func smallScans(s *Store) {
	if s.cfg.Quantize {
		s.scan.minQuant, s.scan.minSplit = 1, 1
	}
}

func openDir(cfg Config) storetest.Opener {
	return func(t *testing.T, meta retrieval.IndexMeta) retrieval.Store {
		cfg.DataDir = t.TempDir()
		return openMem(cfg)(t, meta)
	}
}

// reopen opens the data dir of a closed store again, with the same options.
func reopen(t *testing.T, closed retrieval.Store, meta retrieval.IndexMeta) (retrieval.Store, error) {
	cfg := closed.(*Store).cfg
	cfg.Meta = meta
	s, err := Open(t.Context(), cfg)
	if err != nil {
		return nil, err
	}
	smallScans(s)
	return s, nil
}

func TestConformanceMemory(t *testing.T) {
	storetest.Run(t, openMem(Config{}), storetest.Options{})
}

func TestConformanceMemoryQuantizedPureGo(t *testing.T) {
	storetest.Run(t, openMem(Config{Quantize: true, PureGo: true}), storetest.Options{})
}

// TestConformanceDisk compacts after every few KiB of log, so snapshots and
// log replay both take part in the reopen tests.
func TestConformanceDisk(t *testing.T) {
	storetest.Run(t, openDir(Config{CompactBytes: 8 << 10, NoSync: true}), storetest.Options{Reopen: reopen})
}

func TestConformanceDiskSynced(t *testing.T) {
	if testing.Short() {
		t.Skip("fsync per write is slow on some disks")
	}
	storetest.Run(t, openDir(Config{Quantize: true}), storetest.Options{Reopen: reopen})
}
