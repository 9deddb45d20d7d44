package embedded_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/clearance-dev/clearance/authz/embedded"
)

// TestMetricsStayOffOurRegistry: OpenFGA registers its collectors on the default
// registry when imported; clearance's own registry stays free of them (so its own
// Go/process collectors register without a clash), and several engines in one
// process do not collide on datastore collectors.
func TestMetricsStayOffOurRegistry(t *testing.T) {
	a := open(t, embedded.Config{Datastore: embedded.SQLite, DataDir: t.TempDir()})
	defer a.Close()
	b := open(t, embedded.Config{Datastore: embedded.SQLite, DataDir: t.TempDir()})
	defer b.Close()

	ours := prometheus.NewRegistry()
	ours.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ours.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "clearance_searches_total", Help: "test"}))
	mfs, err := ours.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "openfga_") {
			t.Errorf("our registry holds OpenFGA metric %s", mf.GetName())
		}
	}
	def, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range def {
		found = found || strings.HasPrefix(mf.GetName(), "openfga_")
	}
	if !found {
		t.Log("no openfga_ metric on the default registry yet (histograms appear after first use)")
	}
}
