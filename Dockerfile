# syntax=docker/dockerfile:1
# clearance's image: a static binary (no cgo: the sqlite driver is pure Go) on an
# empty base, run as a numeric non-root user; no shell, no package manager, no
# libc. Builds without a Docker daemon with any BuildKit-compatible builder
# (buildctl, buildah, podman, kaniko); `ko build` (.ko.yaml) is the other way.
# deploy/image checks the properties below offline (make test).
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
# timetzdata embeds the zone database (there is none in the final image);
# the data dir is created here because the final image has no mkdir.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -tags timetzdata \
      -ldflags "-s -w -X main.version=${VERSION}" -o /out/clearance ./cmd/clearance \
 && mkdir -p /out/data

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build --chown=65532:65532 /out/data /var/lib/clearance
COPY --from=build /out/clearance /usr/local/bin/clearance
# In a container the default listen address (loopback) reaches nobody.
ENV PATH=/usr/local/bin \
    CLEARANCE_ADDR=:8080 \
    CLEARANCE_DATA_DIR=/var/lib/clearance
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/clearance"]
CMD ["serve"]
