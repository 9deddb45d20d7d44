// Package image checks the container image definitions at the repository root
// (Dockerfile, .dockerignore, .ko.yaml) offline. No Dockerfile linter runs here
// without the network (hadolint is not packaged for this distribution), so the
// properties that matter are asserted directly: a static build, an empty or
// distroless final stage with no shell, a numeric non-root user matching the
// Helm chart's, an exec-form entrypoint.
package image
