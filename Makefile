# kubelet-meta-proxy. `make help` lists the targets.
SHELL := /usr/bin/env bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/kubelet-meta-proxy/kubelet-meta-proxy/pkg/version.Version=$(VERSION) -X github.com/kubelet-meta-proxy/kubelet-meta-proxy/pkg/version.Commit=$(COMMIT)
IMG ?= kubelet-meta-proxy:latest

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/kubelet-meta-proxy.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/kubelet-meta-proxy ./cmd/kubelet-meta-proxy

.PHONY: unit
unit: ## Run the unit tests (no cluster needed).
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /e2e)

.PHONY: test
test: ## Run every test: unit and end-to-end.
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 60m ./...

.PHONY: bench
bench: ## Run the Go benchmarks on the real captures.
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...
