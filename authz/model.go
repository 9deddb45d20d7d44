package authz

import (
	_ "embed"
	"fmt"

	"github.com/openfga/language/pkg/go/transformer"
	"google.golang.org/protobuf/encoding/protojson"

	openfgav1 "github.com/openfga/api/proto/openfga/v1"
)

// ModelDSL is clearance's authorization model in OpenFGA's DSL. Engines write it to
// their store at start when the store's latest model differs (idempotent).
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
