// Package clients holds no Go code: it is where the TypeScript and Python
// clients of clearance's API live (clients/typescript, clients/python), and its
// test runs their suites against a real `clearance serve` so that `go test
// ./...` (and `make test`) covers them. The suites need node and npm (with
// `npm ci` done in clients/typescript, as scripts/install-deps.sh does) and
// python3; without them the tests skip, except in CI (CI=true), where they fail.
package clients
