# syntax=docker/dockerfile:1
# kubelet-meta-proxy: a static binary on distroless, running as the nonroot user.
#   make docker-build IMG=registry.example.com/kubelet-meta-proxy:v0.1.0
# (docker build --build-arg VERSION=... --build-arg COMMIT=... -t IMG .)

# The builder runs on the build machine's platform and cross-compiles for the target's.
FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
ARG COMMIT=unknown
WORKDIR /src

# Dependencies first, in their own layer.
COPY go.mod go.sum ./
# go.mod replaces go-conntrack with this directory (third_party/conntrack/README.md).
COPY third_party/ third_party/
RUN --mount=type=cache,target=/go/pkg/mod go mod download

# The sources (.dockerignore lets in only what the binary is built from).
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -tags grpcnotrace \
      -ldflags "-s -w -X github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/version.Version=${VERSION} -X github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/version.Commit=${COMMIT}" \
      -o /out/kubelet-meta-proxy ./cmd/kubelet-meta-proxy

FROM gcr.io/distroless/static:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="kubelet-meta-proxy" \
      org.opencontainers.image.description="Enriches kubelet cAdvisor metrics with namespace labels; serves /metrics and pushes Prometheus remote write" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=builder /out/kubelet-meta-proxy /kubelet-meta-proxy
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/kubelet-meta-proxy"]
