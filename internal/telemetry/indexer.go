package telemetry

import (
	"time"

	"github.com/clearance-dev/clearance/indexer"
)

type indexObserver struct {
	t       *Telemetry
	trigger string
}

// IndexObserver returns the indexer's run observer for one trigger ("push":
// POST /v1/tickets; "background": --index-source).
func (m *Telemetry) IndexObserver(trigger string) indexer.RunObserver {
	return &indexObserver{t: m, trigger: trigger}
}

func (o *indexObserver) RunDone(sum indexer.Summary, err error) {
	o.t.indexRuns.WithLabelValues(o.trigger, Outcome(err)).Inc()
	o.t.indexDuration.WithLabelValues(o.trigger).Observe(sum.Duration.Seconds())
	for _, r := range [...]struct {
		outcome string
		n       int
	}{{"embedded", sum.Embedded}, {"unchanged", sum.Unchanged}, {"deleted", sum.Deleted}, {"moved", sum.Moved}, {"failed", sum.Failed}} {
		if r.n > 0 {
			o.t.indexRows.WithLabelValues(o.trigger, r.outcome).Add(float64(r.n))
		}
	}
	if err == nil {
		o.t.indexLastSuccess.WithLabelValues(o.trigger).Set(float64(time.Now().UnixNano()) / 1e9)
	}
}

func (o *indexObserver) WatermarkSaved() {
	o.t.indexLastCommit.WithLabelValues(o.trigger).Set(float64(time.Now().UnixNano()) / 1e9)
}
