// Package openfga is clearance's relationship engine on a remote OpenFGA server,
// through github.com/openfga/go-sdk.
//
// It uses the given store (or finds/creates one by name), the given model id (or
// writes authz.ModelDSL when the store's latest model differs), retries 429 and 5xx
// answers with backoff (the SDK's retry loop), and turns every failure to answer into
// an error wrapping authz.ErrUnavailable.
//
// Listing: the server's StreamedListObjects has no result cap, but it ends the stream
// quietly at its own --listObjects-deadline. Config.ServerListObjectsDeadline tells
// this package that value; a stream that lasted that long (or hit our own deadline)
// ends with authz.ErrTruncated instead of passing for complete.
package openfga

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"
	fgasdk "github.com/openfga/go-sdk"
	"github.com/openfga/go-sdk/credentials"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/clearance-dev/clearance"
	"github.com/clearance-dev/clearance/authz"
	"github.com/clearance-dev/clearance/authz/internal/fga"
)

// Defaults used when a Config field is zero.
const (
	DefaultStoreName                 = "clearance"
	DefaultMaxChecksPerBatchCheck    = 50
	DefaultBatchConcurrency          = 4
	DefaultMaxTuplesPerWrite         = 100
	DefaultListObjectsDeadline       = 30 * time.Second
	DefaultServerListObjectsDeadline = 3 * time.Second
	DefaultListUsersDeadline         = 30 * time.Second
	DefaultServerListUsersDeadline   = 3 * time.Second
	DefaultServerListUsersMaxResults = 1000
	DefaultRequestTimeout            = 10 * time.Second
	DefaultMaxRetries                = 3
	DefaultMinRetryWait              = 50 * time.Millisecond
)

// Config configures the remote engine.
type Config struct {
	// URL of the OpenFGA HTTP API, e.g. http://127.0.0.1:8080.
	URL string
	// StoreID to use. Empty: find the store named StoreName, or create it.
	StoreID string
	// StoreName is used only when StoreID is empty (default "clearance").
	StoreName string
	// ModelID pins the authorization model; it is checked for every type and
	// relation clearance needs and never replaced. Empty: use the store's latest
	// model when it is clearance's, else write clearance's model if the store is
	// clearance's own (created by it, or named StoreName with a latest model that
	// carries authz.ModelMarkerType) or WriteModel is set, else use the latest
	// model if it has everything clearance needs, else refuse to start.
	ModelID string
	// WriteModel writes clearance's model as the store's latest even when the
	// store is not clearance's own (--openfga-write-model). Not with ModelID.
	WriteModel bool
	// ModelDSL overrides authz.ModelDSL (tests).
	ModelDSL string
	// APIToken is sent as a bearer token when set.
	APIToken string
	// RequestTimeout bounds each HTTP call, retries included.
	RequestTimeout time.Duration
	// MaxRetries and MinRetryWait drive the SDK's retry with exponential backoff on
	// 429 and 5xx.
	MaxRetries   int
	MinRetryWait time.Duration
	// MaxChecksPerBatchCheck must not exceed the server's
	// --max-checks-per-batch-check (50 by default).
	MaxChecksPerBatchCheck int
	// BatchConcurrency bounds the chunks of one BatchCheck in flight.
	BatchConcurrency int
	// MaxTuplesPerWrite must not exceed the server's --max-tuples-per-write (100 by
	// default). Larger writes are validated as a whole first, then chunked.
	MaxTuplesPerWrite int
	// ListObjectsDeadline bounds one ListObjects on our side.
	ListObjectsDeadline time.Duration
	// ServerListObjectsDeadline is the server's --listObjects-deadline (3 s by
	// default). A stream lasting that long is reported as truncated.
	ServerListObjectsDeadline time.Duration
	// ChangelogWindow is how far back each revision probe re-reads the store's
	// change log to catch writes that committed out of id order: at least the
	// server's --request-timeout plus clock skew between its nodes. Default 30s.
	// The server must run with --changelog-horizon-offset 0 (its default), or
	// new changes stay hidden from the probe.
	ChangelogWindow time.Duration
	// ChangelogPageSize must not exceed the server's
	// --read-changes-max-page-size (100 by default).
	ChangelogPageSize int
	// ListUsersDeadline bounds one ListUsers on our side.
	ListUsersDeadline time.Duration
	// ServerListUsersDeadline is the server's --listUsers-deadline (3 s by
	// default); a call lasting that long is reported as truncated. Negative: the
	// server has none.
	ServerListUsersDeadline time.Duration
	// ServerListUsersMaxResults is the server's --listUsers-max-results (1,000 by
	// default); an answer that large is reported as truncated. Negative: the server
	// has no cap (--listUsers-max-results 0), the setting the flow check needs.
	ServerListUsersMaxResults int
	// HTTPClient overrides the HTTP client (its Timeout is left as is).
	HTTPClient *http.Client
	// Logger for setup messages. Nil: discard.
	Logger *slog.Logger
}

func (c *Config) defaults() {
	c.StoreName = cmp.Or(c.StoreName, DefaultStoreName)
	c.ModelDSL = cmp.Or(c.ModelDSL, authz.ModelDSL)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, DefaultRequestTimeout)
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	c.MinRetryWait = cmp.Or(c.MinRetryWait, DefaultMinRetryWait)
	c.MaxChecksPerBatchCheck = cmp.Or(c.MaxChecksPerBatchCheck, DefaultMaxChecksPerBatchCheck)
	c.BatchConcurrency = cmp.Or(c.BatchConcurrency, DefaultBatchConcurrency)
	c.MaxTuplesPerWrite = cmp.Or(c.MaxTuplesPerWrite, DefaultMaxTuplesPerWrite)
	c.ListObjectsDeadline = cmp.Or(c.ListObjectsDeadline, DefaultListObjectsDeadline)
	c.ServerListObjectsDeadline = cmp.Or(c.ServerListObjectsDeadline, DefaultServerListObjectsDeadline)
	c.ListUsersDeadline = cmp.Or(c.ListUsersDeadline, DefaultListUsersDeadline)
	c.ServerListUsersDeadline = cmp.Or(c.ServerListUsersDeadline, DefaultServerListUsersDeadline)
	c.ServerListUsersMaxResults = cmp.Or(c.ServerListUsersMaxResults, DefaultServerListUsersMaxResults)
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Engine talks to a remote OpenFGA server. It implements authz.Engine.
type Engine struct {
	cfg       Config
	api       fgasdk.OpenFgaApi
	storeID   string
	modelID   string
	validator *fga.Validator
	changelog *fga.Changelog
	closed    atomic.Bool
	model     *openfgav1.AuthorizationModel
	// clearanceModel: the model in use is authz.ModelDSL.
	clearanceModel bool
}

var (
	_ authz.Engine           = (*Engine)(nil)
	_ authz.Revisioned       = (*Engine)(nil)
	_ authz.ClearanceModeled = (*Engine)(nil)
	_ authz.ChangeLister     = (*Engine)(nil)
)

// New connects to the server and settles store and model.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	cfg.defaults()
	if cfg.URL == "" {
		return nil, clearance.Invalid("openfga.url", "is required")
	}
	sdkCfg := fgasdk.Configuration{
		ApiUrl:     strings.TrimRight(cfg.URL, "/"),
		HTTPClient: cfg.HTTPClient,
		RetryParams: &fgasdk.RetryParams{
			MaxRetry:    cfg.MaxRetries,
			MinWaitInMs: int(cfg.MinRetryWait / time.Millisecond),
		},
	}
	if cfg.MaxRetries < 0 {
		sdkCfg.RetryParams.MaxRetry = 0
	}
	if cfg.APIToken != "" {
		sdkCfg.Credentials = &credentials.Credentials{
			Method: credentials.CredentialsMethodApiToken,
			Config: &credentials.Config{ApiToken: cfg.APIToken},
		}
	}
	c, err := fgasdk.NewConfiguration(sdkCfg)
	if err != nil {
		return nil, clearance.Invalid("openfga", "%v", err)
	}
	e := &Engine{cfg: cfg, api: fgasdk.NewAPIClient(c).OpenFgaApi, storeID: cfg.StoreID, modelID: cfg.ModelID}
	if err := e.setup(ctx); err != nil {
		return nil, err
	}
	e.changelog = fga.NewChangelog(fga.ChangelogConfig{
		Window:   cfg.ChangelogWindow,
		PageSize: cfg.ChangelogPageSize,
		Timeout:  cfg.RequestTimeout,
	}, e.readChanges)
	return e, nil
}

func (e *Engine) setup(ctx context.Context) error {
	if e.cfg.WriteModel && e.modelID != "" {
		return clearance.Invalid("openfga.write_model", "a pinned model id is never replaced: drop the model id or the write flag")
	}
	want, err := authz.ParseModel(e.cfg.ModelDSL)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RequestTimeout)
	defer cancel()
	created, named := false, false
	if e.storeID == "" {
		stores, _, err := e.api.ListStores(ctx).Name(e.cfg.StoreName).PageSize(1).Execute()
		if err != nil {
			return mapErr("list stores", err)
		}
		if len(stores.Stores) > 0 {
			e.storeID, named = stores.Stores[0].Id, true
		} else {
			s, _, err := e.api.CreateStore(ctx).Body(fgasdk.CreateStoreRequest{Name: e.cfg.StoreName}).Execute()
			if err != nil {
				return mapErr("create store", err)
			}
			e.storeID, created = s.Id, true
			e.cfg.Logger.Info("openfga store created", "store", e.storeID, "name", e.cfg.StoreName)
		}
	} else {
		s, _, err := e.api.GetStore(ctx, e.storeID).Execute()
		if err != nil {
			return mapErr("get store "+e.storeID, err)
		}
		named = s.Name == e.cfg.StoreName
	}
	var model *openfgav1.AuthorizationModel
	if e.modelID != "" {
		m, _, err := e.api.ReadAuthorizationModel(ctx, e.storeID, e.modelID).Execute()
		if err != nil {
			return mapErr("read model "+e.modelID, err)
		}
		if model, err = toProto(m.AuthorizationModel); err != nil {
			return err
		}
		if err := fga.CheckPinned(e.storeID, want, model); err != nil {
			return err
		}
	} else {
		models, _, err := e.api.ReadAuthorizationModels(ctx, e.storeID).PageSize(1).Execute()
		if err != nil {
			return mapErr("read models", err)
		}
		var latest *openfgav1.AuthorizationModel
		if len(models.AuthorizationModels) > 0 {
			if latest, err = toProto(&models.AuthorizationModels[0]); err != nil {
				return err
			}
		}
		owned := created || (named && (latest == nil || fga.HasMarker(latest)))
		write, err := fga.ChooseModel(fga.ModelStore{ID: e.storeID, Owned: owned, WriteAllowed: e.cfg.WriteModel}, want, latest)
		if err != nil {
			return err
		}
		if write {
			var req fgasdk.WriteAuthorizationModelRequest
			raw, err := protojson.Marshal(want)
			if err == nil {
				err = json.Unmarshal(raw, &req)
			}
			if err != nil {
				return fmt.Errorf("encode authorization model: %w", err)
			}
			w, _, err := e.api.WriteAuthorizationModel(ctx, e.storeID).Body(req).Execute()
			if err != nil {
				return mapErr("write model", err)
			}
			model, e.modelID = want, w.AuthorizationModelId
			e.cfg.Logger.Info("authorization model written", "store", e.storeID, "model", e.modelID)
		} else {
			model, e.modelID = latest, latest.GetId()
		}
	}
	if !fga.SameModel(model, want) {
		e.cfg.Logger.Warn("using a model that is not clearance's: it has every type and relation clearance needs",
			"store", e.storeID, "model", e.modelID, "defined_differently", fga.Differing(want, model))
	}
	if std, err := authz.Model(); err == nil {
		e.clearanceModel = fga.SameModel(model, std)
	}
	v, err := fga.NewValidator(model)
	if err != nil {
		return err
	}
	e.validator, e.model = v, model
	return nil
}

// Model is the authorization model this engine evaluates (clearance's, or a
// pinned or foreign one that has what clearance needs). Callers must not change it.
func (e *Engine) Model() *openfgav1.AuthorizationModel { return e.model }

// ClearanceModel implements authz.ClearanceModeled.
func (e *Engine) ClearanceModel() bool { return e.clearanceModel }

// toProto converts the SDK's model to OpenFGA's protobuf through JSON.
func toProto(m any) (*openfgav1.AuthorizationModel, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("decode authorization model: %w", err)
	}
	var out openfgav1.AuthorizationModel
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("decode authorization model: %w", err)
	}
	return &out, nil
}

// StoreID is the id of the store this engine uses.
func (e *Engine) StoreID() string { return e.storeID }

// ModelID implements authz.Engine.
func (e *Engine) ModelID() string { return e.modelID }

// DeleteStore deletes this engine's store on the server, for throwaway stores
// (`clearance bench`). OpenFGA marks the store deleted; its tuples stay in the
// server's datastore. It works after Close too (a caller's cleanup may run
// last); the engine answers nothing useful afterwards.
func (e *Engine) DeleteStore(ctx context.Context) error {
	if _, err := e.api.DeleteStore(ctx, e.storeID).Execute(); err != nil {
		return mapErr("delete store", err)
	}
	return nil
}

// Revision implements authz.Revisioned from the store's change log, which every
// replica on the store shares.
func (e *Engine) Revision(ctx context.Context) (authz.Revision, error) {
	if err := e.live(); err != nil {
		return authz.Revision{}, err
	}
	rev, err := e.changelog.Revision(ctx)
	if err != nil {
		return rev, mapErr("read changes", err)
	}
	return rev, nil
}

// ChangedObjects implements authz.ChangeLister from the store's change log:
// the objects of the tuple changes between two of this adapter's revisions.
func (e *Engine) ChangedObjects(from, to authz.Revision) ([]string, bool) {
	return e.changelog.ChangedObjects(from, to)
}

// readChanges reads one page of the store's change log (every type).
func (e *Engine) readChanges(ctx context.Context, token string, start time.Time, pageSize int) (fga.ChangePage, error) {
	req := e.api.ReadChanges(ctx, e.storeID).PageSize(int32(pageSize))
	if token != "" {
		req = req.ContinuationToken(token)
	} else if !start.IsZero() {
		req = req.StartTime(start)
	}
	resp, _, err := req.Execute()
	if err != nil {
		return fga.ChangePage{}, err
	}
	p := fga.ChangePage{Token: resp.GetContinuationToken(), Changes: make([]fga.Change, len(resp.Changes))}
	for i, c := range resp.Changes {
		p.Changes[i] = fga.Change{
			Time:      c.Timestamp,
			Operation: string(c.Operation),
			Tuple:     authz.Tuple{User: c.TupleKey.User, Relation: c.TupleKey.Relation, Object: c.TupleKey.Object},
		}
	}
	return p, nil
}

// Close implements authz.Engine; later calls fail with ErrUnavailable.
func (e *Engine) Close() error {
	e.closed.Store(true)
	e.cfg.HTTPClient.CloseIdleConnections()
	return nil
}

// mapErr: validation answers (400) are invalid input; everything else (network,
// 5xx and 429 after retries, auth, not found store) means no answer.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var ve fgasdk.FgaApiValidationError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w: %s: %s", authz.ErrInvalidTuple, op, validationMessage(ve))
	}
	return fmt.Errorf("%w: %s: %w", authz.ErrUnavailable, op, err)
}

func validationMessage(ve fgasdk.FgaApiValidationError) string {
	var body struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(ve.Body(), &body) == nil && body.Message != "" {
		return body.Message
	}
	return ve.Error()
}

func (e *Engine) live() error {
	if e.closed.Load() {
		return fmt.Errorf("%w: engine closed", authz.ErrUnavailable)
	}
	return nil
}

func tupleKey(t authz.Tuple) fgasdk.TupleKey {
	k := fgasdk.TupleKey{User: t.User, Relation: t.Relation, Object: t.Object}
	if t.Condition != nil {
		k.Condition = &fgasdk.RelationshipCondition{Name: t.Condition.Name}
		if len(t.Condition.Context) > 0 {
			c := t.Condition.Context
			k.Condition.Context = &c
		}
	}
	return k
}

type request struct {
	tuples      *fgasdk.ContextualTupleKeys
	context     *map[string]any
	consistency *fgasdk.ConsistencyPreference
}

func (e *Engine) request(q authz.Query) (request, error) {
	if err := e.live(); err != nil {
		return request{}, err
	}
	if err := e.validator.ValidateAll(q.ContextualTuples, false); err != nil {
		return request{}, err
	}
	ctx := q.WithCurrentTime()
	cons := fgasdk.CONSISTENCYPREFERENCE_MINIMIZE_LATENCY
	if q.Consistency == authz.HigherConsistency {
		cons = fgasdk.CONSISTENCYPREFERENCE_HIGHER_CONSISTENCY
	}
	r := request{context: &ctx, consistency: &cons}
	if len(q.ContextualTuples) > 0 {
		keys := make([]fgasdk.TupleKey, len(q.ContextualTuples))
		for i, t := range q.ContextualTuples {
			keys[i] = tupleKey(t)
		}
		r.tuples = &fgasdk.ContextualTupleKeys{TupleKeys: keys}
	}
	return r, nil
}

func (e *Engine) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.cfg.RequestTimeout)
}

// Write implements authz.Engine. The whole call is validated against the model
// first; a call larger than MaxTuplesPerWrite is then sent in chunks (each one a
// server transaction).
func (e *Engine) Write(ctx context.Context, writes, deletes []authz.Tuple) error {
	if err := e.live(); err != nil {
		return err
	}
	chunks, err := e.validator.PlanWrite(writes, deletes, e.cfg.MaxTuplesPerWrite)
	if err != nil {
		return err
	}
	ignore := "ignore"
	for _, c := range chunks {
		req := fgasdk.WriteRequest{AuthorizationModelId: &e.modelID}
		if len(c.Writes) > 0 {
			keys := make([]fgasdk.TupleKey, len(c.Writes))
			for i, t := range c.Writes {
				keys[i] = tupleKey(t)
			}
			req.Writes = &fgasdk.WriteRequestWrites{TupleKeys: keys, OnDuplicate: &ignore}
		}
		if len(c.Deletes) > 0 {
			keys := make([]fgasdk.TupleKeyWithoutCondition, len(c.Deletes))
			for i, d := range c.Deletes {
				keys[i] = fgasdk.TupleKeyWithoutCondition{User: d.User, Relation: d.Relation, Object: d.Object}
			}
			req.Deletes = &fgasdk.WriteRequestDeletes{TupleKeys: keys, OnMissing: &ignore}
		}
		cctx, cancel := e.timeout(ctx)
		_, _, err := e.api.Write(cctx, e.storeID).Body(req).Execute()
		cancel()
		if err != nil {
			return mapErr("write", err)
		}
	}
	return nil
}

// Check implements authz.Engine.
func (e *Engine) Check(ctx context.Context, q authz.Query, c authz.Check) (bool, error) {
	r, err := e.request(q)
	if err != nil {
		return false, err
	}
	ctx, cancel := e.timeout(ctx)
	defer cancel()
	resp, _, err := e.api.Check(ctx, e.storeID).Body(fgasdk.CheckRequest{
		TupleKey:             fgasdk.CheckRequestTupleKey{User: c.User, Relation: c.Relation, Object: c.Object},
		ContextualTuples:     r.tuples,
		AuthorizationModelId: &e.modelID,
		Context:              r.context,
		Consistency:          r.consistency,
	}).Execute()
	if err != nil {
		return false, mapErr("check", err)
	}
	return resp.GetAllowed(), nil
}

// BatchCheck implements authz.Engine.
func (e *Engine) BatchCheck(ctx context.Context, q authz.Query, checks []authz.Check) ([]bool, error) {
	r, err := e.request(q)
	if err != nil {
		return nil, err
	}
	return fga.Batch(ctx, len(checks), e.cfg.MaxChecksPerBatchCheck, e.cfg.BatchConcurrency, func(ctx context.Context, lo, hi int, out []bool) error {
		items := make([]fgasdk.BatchCheckItem, 0, hi-lo)
		for i, c := range checks[lo:hi] {
			items = append(items, fgasdk.BatchCheckItem{
				TupleKey:         fgasdk.CheckRequestTupleKey{User: c.User, Relation: c.Relation, Object: c.Object},
				ContextualTuples: r.tuples,
				Context:          r.context,
				CorrelationId:    strconv.Itoa(i),
			})
		}
		ctx, cancel := e.timeout(ctx)
		defer cancel()
		resp, _, err := e.api.BatchCheck(ctx, e.storeID).Body(fgasdk.BatchCheckRequest{
			Checks:               items,
			AuthorizationModelId: &e.modelID,
			Consistency:          r.consistency,
		}).Execute()
		if err != nil {
			return mapErr("batch check", err)
		}
		res := resp.GetResult()
		return fga.Fill(out, lo, checks, func(id string) fga.Item {
			r, ok := res[id]
			if !ok {
				return fga.Item{}
			}
			if r.Error != nil {
				return fga.Item{Found: true, Err: r.Error.GetMessage()}
			}
			return fga.Item{Found: true, Allowed: r.Allowed}
		})
	})
}

// ListObjects implements authz.Engine with the server's streamed listing.
func (e *Engine) ListObjects(ctx context.Context, q authz.Query, user, relation, objectType string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		r, err := e.request(q)
		if err != nil {
			yield("", err)
			return
		}
		ctx, cancel := context.WithTimeout(ctx, e.cfg.ListObjectsDeadline)
		defer cancel()
		start := time.Now()
		ch, err := e.api.StreamedListObjects(ctx, e.storeID).Body(fgasdk.ListObjectsRequest{
			AuthorizationModelId: &e.modelID,
			Type:                 objectType,
			Relation:             relation,
			User:                 user,
			ContextualTuples:     r.tuples,
			Context:              r.context,
			Consistency:          r.consistency,
		}).Execute()
		if err != nil {
			yield("", mapErr("list objects", err))
			return
		}
		defer ch.Close()
		prefix := objectType + ":"
		for o := range ch.Objects {
			if !yield(strings.TrimPrefix(o.Object, prefix), nil) {
				return
			}
		}
		var streamErr error
		for err := range ch.Errors {
			if streamErr == nil {
				streamErr = err
			}
		}
		if cerr := ctx.Err(); cerr != nil {
			yield("", fga.Truncated(objectType, relation, user, cerr))
			return
		}
		if streamErr != nil {
			yield("", mapErr("list objects", streamErr))
			return
		}
		if elapsed := time.Since(start); elapsed >= e.cfg.ServerListObjectsDeadline {
			// The server ends a stream silently at its deadline; one that lasted that
			// long cannot be told apart from a cut one.
			yield("", fga.Truncated(objectType, relation, user, fmt.Errorf("stream lasted %v, server deadline %v", elapsed, e.cfg.ServerListObjectsDeadline)))
		}
	}
}

// Read implements authz.Engine.
func (e *Engine) Read(ctx context.Context, f authz.TupleFilter) iter.Seq2[authz.Tuple, error] {
	return func(yield func(authz.Tuple, error) bool) {
		if err := e.live(); err != nil {
			yield(authz.Tuple{}, err)
			return
		}
		if err := fga.CheckFilter(f); err != nil {
			yield(authz.Tuple{}, err)
			return
		}
		token := ""
		cons := fgasdk.CONSISTENCYPREFERENCE_HIGHER_CONSISTENCY
		for {
			req := fgasdk.ReadRequest{
				TupleKey:    &fgasdk.ReadRequestTupleKey{User: opt(f.User), Relation: opt(f.Relation), Object: opt(f.Object)},
				PageSize:    fgasdk.PtrInt32(100),
				Consistency: &cons,
			}
			if token != "" {
				req.ContinuationToken = &token
			}
			cctx, cancel := e.timeout(ctx)
			resp, _, err := e.api.Read(cctx, e.storeID).Body(req).Execute()
			cancel()
			if err != nil {
				yield(authz.Tuple{}, mapErr("read", err))
				return
			}
			for _, t := range resp.Tuples {
				out := authz.Tuple{User: t.Key.User, Relation: t.Key.Relation, Object: t.Key.Object}
				if c := t.Key.Condition; c != nil {
					out.Condition = &authz.Condition{Name: c.Name}
					if c.Context != nil {
						out.Condition.Context = *c.Context
					}
				}
				if !yield(out, nil) {
					return
				}
			}
			token = resp.ContinuationToken
			if token == "" {
				return
			}
		}
	}
}

func opt(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
