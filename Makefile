# clearance: `make test` installs what is missing, starts throwaway servers on
# loopback, runs every test and stops what it started.
GO ?= go
TESTFLAGS ?= -count=1 -timeout 30m

.PHONY: test deps unit lint bench demo build openapi newcomer deploy-test

test: deps openapi
	./scripts/with-test-servers.sh $(GO) test $(TESTFLAGS) ./...
	$(MAKE) deploy-test

# deploy-test lints the Helm chart and checks what it renders and the image
# definitions offline (deploy/ is its own module: the Kubernetes API types stay
# out of the server's). Without helm it skips, except with CI=true.
deploy-test:
	cd deploy && $(GO) test $(TESTFLAGS) ./...

deps:
	./scripts/install-deps.sh

# openapi lints api/openapi.yaml and type-checks the TypeScript types generated
# from it (tools/openapi; the Go tests validate its examples).
openapi: deps
	./tools/openapi/check.sh

# newcomer follows the README from a fresh clone: the demo, its curl lines, MCP.
newcomer:
	./scripts/newcomer.sh

# unit runs the tests that need no external servers (backends needing them skip).
unit:
	$(GO) test $(TESTFLAGS) ./...
	$(MAKE) deploy-test

lint:
	gofmt -l . | (! grep .)
	$(GO) vet ./...
	$$($(GO) env GOPATH)/bin/staticcheck ./...
	cd deploy && $(GO) vet ./... && $$($(GO) env GOPATH)/bin/staticcheck ./...

build:
	$(GO) build -buildvcs=auto -o bin/clearance ./cmd/clearance

demo:
	$(GO) run ./cmd/clearance demo

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
