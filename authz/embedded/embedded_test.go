package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/authztest"
	"github.com/clearance-dev/clearance/authz/embedded"
	"github.com/clearance-dev/clearance/internal/testenv"
)

func open(t testing.TB, cfg embedded.Config) *embedded.Engine {
	t.Helper()
	e, err := embedded.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("embedded.New(%s): %v", cfg.Datastore, err)
	}
	return e
}

func closeDatastore(t *testing.T, e authz.Engine) { e.(*embedded.Engine).CloseDatastore() }

func TestConformanceMemory(t *testing.T) {
	authztest.Run(t, authztest.Backend{
		New: func(t *testing.T) authz.Engine { return open(t, embedded.Config{Datastore: embedded.Memory}) },
		// The memory datastore cannot fail; the fault test runs on sqlite and postgres.
	})
}

func TestConformanceSQLite(t *testing.T) {
	authztest.Run(t, authztest.Backend{
		New: func(t *testing.T) authz.Engine {
			return open(t, embedded.Config{Datastore: embedded.SQLite, DataDir: t.TempDir()})
		},
		Break: closeDatastore,
	})
}

func TestConformancePostgres(t *testing.T) {
	testenv.DatabaseURL(t) // skip early (or fail in CI) without a server
	authztest.Run(t, authztest.Backend{
		New: func(t *testing.T) authz.Engine {
			return open(t, embedded.Config{Datastore: embedded.Postgres, DatabaseURL: testenv.DatabaseURL(t)})
		},
		Break: closeDatastore,
	})
}

// TestRestartIsIdempotent: reopening the same data dir finds the store and the model
// and writes nothing new; tuples survive.
func TestRestartIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	cfg := embedded.Config{DataDir: dir} // sqlite is the default
	e1 := open(t, cfg)
	store, model := e1.StoreID(), e1.ModelID()
	if err := e1.Write(context.Background(), []authz.Tuple{{User: "user:u", Relation: "viewer", Object: "ticket:x"}}, nil); err != nil {
		t.Fatal(err)
	}
	e1.Close()
	if _, err := filepath.Glob(filepath.Join(dir, "openfga.db")); err != nil {
		t.Fatal(err)
	}
	e2 := open(t, cfg)
	defer e2.Close()
	if e2.StoreID() != store || e2.ModelID() != model {
		t.Errorf("reopen: store %s model %s, want %s %s", e2.StoreID(), e2.ModelID(), store, model)
	}
	ok, err := e2.Check(context.Background(), authz.Query{}, authz.Check{User: "user:u", Relation: "can_view", Object: "ticket:x"})
	if err != nil || !ok {
		t.Errorf("tuple lost across restart: %v %v", ok, err)
	}
	// A changed model is written once and becomes the model in use.
	cfg.ModelDSL = strings.Replace(authz.ModelDSL, "type agent\n", "type agent\n\ntype extra\n", 1)
	e3 := open(t, cfg)
	defer e3.Close()
	if e3.ModelID() == model {
		t.Error("changed model was not written")
	}
	// Caches proven for clearance's model are told apart from another one.
	if !e2.ClearanceModel() || e3.ClearanceModel() {
		t.Errorf("ClearanceModel: clearance's %v, changed %v", e2.ClearanceModel(), e3.ClearanceModel())
	}
	e4 := open(t, cfg)
	defer e4.Close()
	if e4.ModelID() != e3.ModelID() {
		t.Error("unchanged model written again")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []embedded.Config{
		{Datastore: "mysql"},
		{Datastore: embedded.SQLite},
		{Datastore: embedded.Postgres},
		{Datastore: embedded.Memory, MaxChecksPerBatchCheck: -1},
	} {
		_, err := embedded.New(context.Background(), cfg)
		var fe *clearance.FieldError
		if !errors.As(err, &fe) {
			t.Errorf("New(%+v) = %v, want a field error", cfg, err)
		}
	}
}

// TestUnreachablePostgres: a datastore that cannot be reached is ErrUnavailable.
func TestUnreachablePostgres(t *testing.T) {
	_, err := embedded.New(context.Background(), embedded.Config{Datastore: embedded.Postgres, DatabaseURL: "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1", StartupTimeout: time.Second})
	if !errors.Is(err, authz.ErrUnavailable) {
		t.Errorf("New with unreachable postgres = %v, want ErrUnavailable", err)
	}
}

// TestDeadlineIsTruncation: a listing cut by our deadline ends with ErrTruncated,
// never as a short complete list.
func TestDeadlineIsTruncation(t *testing.T) {
	e := open(t, embedded.Config{Datastore: embedded.SQLite, DataDir: t.TempDir()})
	defer e.Close()
	ctx := context.Background()
	ts := []authz.Tuple{{User: "user:u", Relation: "member", Object: "project:p"}}
	for i := range 3000 {
		ts = append(ts, authz.Tuple{User: "project:p", Relation: "project", Object: fmt.Sprintf("ticket:t%d", i)})
	}
	if err := e.Write(ctx, ts, nil); err != nil {
		t.Fatal(err)
	}
	full, err := authztest.Collect(e.ListObjects(ctx, authz.Query{}, "user:u", "can_view", "ticket"))
	if err != nil || len(full) != 3000 {
		t.Fatalf("full listing: %d, %v", len(full), err)
	}
	short := open(t, embedded.Config{Datastore: embedded.SQLite, DataDir: filepath.Dir(e.SQLitePath()), ListObjectsDeadline: time.Millisecond})
	defer short.Close()
	ids, err := authztest.Collect(short.ListObjects(ctx, authz.Query{}, "user:u", "can_view", "ticket"))
	if !errors.Is(err, authz.ErrTruncated) {
		t.Fatalf("listing under a 1ms deadline: %d ids, err %v; want ErrTruncated", len(ids), err)
	}
}

// TestForeignModelOnSharedPostgres: on a PostgreSQL datastore that another
// OpenFGA user shares, a store named like clearance's whose latest model is
// someone else's is refused with what is missing and left as it is; with
// WriteModel clearance writes its own. A sqlite store is clearance's alone.
func TestForeignModelOnSharedPostgres(t *testing.T) {
	dbURL := testenv.DatabaseURL(t)
	foreign := "model\n  schema 1.1\ntype user\ntype document\n  relations\n    define viewer: [user]\n"
	// The other application made the store (and so owned it) first.
	app := open(t, embedded.Config{Datastore: embedded.Postgres, DatabaseURL: dbURL, ModelDSL: foreign})
	appModel := app.ModelID()
	app.Close()
	_, err := embedded.New(context.Background(), embedded.Config{Datastore: embedded.Postgres, DatabaseURL: dbURL})
	if !errors.Is(err, authz.ErrModelMismatch) || !strings.Contains(err.Error(), "type tenant") || !strings.Contains(err.Error(), "condition not_expired") {
		t.Fatalf("foreign model: err = %v, want a mismatch naming what is missing", err)
	}
	again := open(t, embedded.Config{Datastore: embedded.Postgres, DatabaseURL: dbURL, ModelDSL: foreign})
	if again.ModelID() != appModel {
		t.Errorf("the application's model was replaced: %s, want %s", again.ModelID(), appModel)
	}
	again.Close()
	e := open(t, embedded.Config{Datastore: embedded.Postgres, DatabaseURL: dbURL, WriteModel: true})
	defer e.Close()
	if e.ModelID() == appModel {
		t.Error("WriteModel did not write clearance's model")
	}
	// Now the store's latest model is clearance's (marked): later starts
	// update it without the flag.
	changed := strings.Replace(authz.ModelDSL, "type agent\n", "type agent\n\ntype extra\n", 1)
	e2 := open(t, embedded.Config{Datastore: embedded.Postgres, DatabaseURL: dbURL, ModelDSL: changed})
	defer e2.Close()
	if e2.ModelID() == e.ModelID() {
		t.Error("clearance's own store did not get the changed model")
	}
}
