// Package image checks the container image definitions at the repository root
// (Dockerfile, .dockerignore, .ko.yaml) offline. hadolint is not packaged here and
// `docker build --check` needs a daemon, so the Dockerfile is parsed by BuildKit's
// own parser and instruction linter (its flags, RUN --mount included, are
// validated; any warning fails), and the properties that matter are asserted on
// the parsed instructions: a static build, an empty or distroless final stage
// with no shell, a numeric non-root user matching the Helm chart's, exec-form
// entrypoint.
package image
