//go:build tools

// Package tools pins the modules the project builds on so go.mod and go.sum stay
// complete while packages that use them are being written. It is never compiled.
package tools

import (
	_ "github.com/chromedp/chromedp"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/labstack/echo/v4"
	_ "github.com/lestrrat-go/jwx/v3/jwk"
	_ "github.com/lestrrat-go/jwx/v3/jwt"
	_ "github.com/modelcontextprotocol/go-sdk/mcp"
	_ "github.com/oklog/ulid/v2"
	_ "github.com/openfga/go-sdk/client"
	_ "github.com/openfga/language/pkg/go/transformer"
	_ "github.com/openfga/openfga/cmd/migrate"
	_ "github.com/openfga/openfga/pkg/server"
	_ "github.com/openfga/openfga/pkg/storage/memory"
	_ "github.com/openfga/openfga/pkg/storage/postgres"
	_ "github.com/openfga/openfga/pkg/storage/sqlite"
	_ "github.com/pgvector/pgvector-go/pgx"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/qdrant/go-client/qdrant"
	_ "github.com/robfig/cron/v3"
	_ "github.com/schollz/progressbar/v3"
	_ "github.com/spf13/cobra"
	_ "github.com/viterin/vek/vek32"
	_ "github.com/zitadel/oidc/v3/pkg/op"
	_ "go.etcd.io/bbolt"
	_ "gopkg.in/yaml.v3"
)
