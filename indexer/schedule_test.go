package indexer

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance-dev/clearance/internal/testenv"
)

func TestScheduleSpecs(t *testing.T) {
	job := func(context.Context) error { return nil }
	for _, bad := range []ScheduleConfig{
		{Job: job},
		{Job: job, Every: time.Minute, Cron: "* * * * *"},
		{Job: job, Cron: "*/5 * * *"},
		{Job: job, Cron: "every day"},
	} {
		if _, err := NewScheduler(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	s, err := NewScheduler(ScheduleConfig{Job: job, Cron: "*/5 * * * *"})
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 11, 1, 10, 3, 30, 0, time.UTC)
	if got := s.Next(from); !got.Equal(time.Date(2026, 11, 1, 10, 5, 0, 0, time.UTC)) {
		t.Errorf("next of */5 after 10:03:30 = %v", got)
	}
}

// blockingJob runs until released and counts its runs.
type blockingJob struct {
	started chan struct{}
	release chan struct{}
	runs    atomic.Int32
}

func newBlockingJob() *blockingJob {
	return &blockingJob{started: make(chan struct{}, 16), release: make(chan struct{})}
}

func (b *blockingJob) run(ctx context.Context) error {
	b.runs.Add(1)
	b.started <- struct{}{}
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func waitFor(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestSchedulerSkipsOverlappingRuns(t *testing.T) {
	job := newBlockingJob()
	s, err := NewScheduler(ScheduleConfig{Every: 5 * time.Millisecond, Job: job.run, RunAtStart: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start(context.Background())
	waitFor(t, job.started, "the first run")
	// While it runs, ticks come and are skipped; a manual run is refused too.
	if ran, err := s.RunNow(context.Background()); ran || err != nil {
		t.Fatalf("overlapping RunNow: ran=%v err=%v", ran, err)
	}
	time.Sleep(30 * time.Millisecond)
	if n := job.runs.Load(); n != 1 {
		t.Fatalf("%d runs while the first was going", n)
	}
	job.release <- struct{}{}
	waitFor(t, job.started, "the next scheduled run")
	s.Stop() // cancels the run in progress and waits for it
	n := job.runs.Load()
	time.Sleep(20 * time.Millisecond)
	if job.runs.Load() != n {
		t.Fatal("a run started after Stop")
	}
}

func TestPGLockSingleRunner(t *testing.T) {
	url := testenv.DatabaseURL(t)
	ctx := context.Background()
	jobA, jobB := newBlockingJob(), newBlockingJob()
	a, err := NewScheduler(ScheduleConfig{Every: time.Hour, Job: jobA.run, Lock: NewPGLock(url, "tickets")})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewScheduler(ScheduleConfig{Every: time.Hour, Job: jobB.run, Lock: NewPGLock(url, "tickets")})
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewScheduler(ScheduleConfig{Every: time.Hour, Job: func(context.Context) error { return nil }, Lock: NewPGLock(url, "other source")})
	if err != nil {
		t.Fatal(err)
	}
	doneA := make(chan bool)
	go func() {
		ran, _ := a.RunNow(ctx)
		doneA <- ran
	}()
	waitFor(t, jobA.started, "replica A's run")
	if ran, err := b.RunNow(ctx); ran || err != nil {
		t.Fatalf("replica B ran while A held the lock: ran=%v err=%v", ran, err)
	}
	if ran, err := other.RunNow(ctx); !ran || err != nil {
		t.Fatalf("a lock of another name blocked: ran=%v err=%v", ran, err)
	}
	jobA.release <- struct{}{}
	if !<-doneA {
		t.Fatal("replica A did not run")
	}
	// A released the lock: B gets its turn.
	go func() { jobB.release <- struct{}{} }()
	if ran, err := b.RunNow(ctx); !ran || err != nil {
		t.Fatalf("replica B after A: ran=%v err=%v", ran, err)
	}
	if jobB.runs.Load() != 1 {
		t.Fatal("B's job did not run")
	}
}

func TestStartBackground(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/t.jsonl"
	rows := genTickets(31, 40, 50)
	writeJSONL(t, file, rows)
	s := openStore(t, "", newEmbedder())
	defer s.Close()
	stop, err := StartBackground(context.Background(), BackgroundConfig{Source: file, Every: time.Hour, Store: s, Embedder: newEmbedder(), DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	// The first run starts at once; wait for its watermark.
	st, _ := NewFileState(dir)
	deadline := time.Now().Add(10 * time.Second)
	for {
		src, _ := NewJSONL(JSONLConfig{Path: file})
		if w, err := st.Load(context.Background(), src.Name()); err == nil && w != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first background run did not finish")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	checkStore(t, s, expected(rows), Chunker{})
}
