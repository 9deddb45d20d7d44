package authz

import (
	_ "embed"
	"fmt"

	"github.com/openfga/language/pkg/go/transformer"
	"google.golang.org/protobuf/encoding/protojson"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"

	"github.com/clearance-dev/clearance"
)

// ModelMarkerType is the type clearance's model carries (and nothing else
// uses) so that a store's latest model shows clearance wrote it.
const ModelMarkerType = "clearance_store"

// ErrModelMismatch: the store's model lacks what clearance needs, or clearance
// may not write its own model there. Start fails with it.
var ErrModelMismatch = fmt.Errorf("authorization model: %w", clearance.ErrInvalid)

// ModelDSL is clearance's authorization model in OpenFGA's DSL. Engines write it to
// their store at start when the store's latest model differs (idempotent), and
// only into a store of clearance's own or when told to (--openfga-write-model).
//
//go:embed model.fga
var ModelDSL string

// Model parses ModelDSL into OpenFGA's protobuf form.
func Model() (*openfgav1.AuthorizationModel, error) {
	return ParseModel(ModelDSL)
}

// ParseModel parses a model in OpenFGA's DSL.
func ParseModel(dsl string) (*openfgav1.AuthorizationModel, error) {
	m, err := transformer.TransformDSLToProto(dsl)
	if err != nil {
		return nil, fmt.Errorf("parse authorization model: %w", err)
	}
	return m, nil
}

// ModelJSON returns the model as OpenFGA's JSON (for the remote API).
func ModelJSON(dsl string) ([]byte, error) {
	m, err := ParseModel(dsl)
	if err != nil {
		return nil, err
	}
	return protojson.Marshal(m)
}
