# kubelet-meta-proxy. `make help` lists the targets.
SHELL := /usr/bin/env bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/version.Version=$(VERSION) -X github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/version.Commit=$(COMMIT)
IMG ?= kubelet-meta-proxy:latest
# grpcnotrace: gRPC (linked by the google_iam client) without golang.org/x/net/trace, which would keep
# every exported method in the binary (third_party/conntrack/README.md).
GOTAGS := grpcnotrace

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/kubelet-meta-proxy.
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(GOTAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/kubelet-meta-proxy ./cmd/kubelet-meta-proxy

.PHONY: unit
unit: ## Run the unit tests (no cluster needed).
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /e2e)
	cd third_party/conntrack && $(GO) test -count=1 ./...

.PHONY: test
test: tools lint ## Run every test: lint (gofmt, go vet, staticcheck), unit and end-to-end.
	$(GO) test -count=1 -timeout 60m ./...
	cd third_party/conntrack && $(GO) test -count=1 ./...

# Fuzz targets (package:target). `make fuzz` runs each for FUZZTIME, one after another;
# `make fuzz FUZZTIME=10m` is the long run.
FUZZ_TARGETS := ./internal/relay:FuzzTextScanner ./internal/relay:FuzzScrapeSequence ./internal/diskqueue:FuzzReadSegment ./internal/remotewrite:FuzzEncode
FUZZTIME ?= 20s

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 20s; FUZZTIME=10m for the long run).
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
		echo "$(GO) test -run '^$$' -fuzz '^$$name$$' -fuzztime $(FUZZTIME) $$pkg"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; done

# Load test profiles (e2e/cmd/loadbench): simulated kubelets, real etcd + kube-apiserver, the relay
# binary, a counting remote-write receiver. Reports go to .bench/loadbench-NODESxPODS.txt.
LOADBENCH_ARGS ?=
LOADBENCH_LARGE_ARGS ?=

.PHONY: bench
bench: ## Run the Go benchmarks on the real captures, then the 50x30 load test (enrichment on and off, then vmagent for the ratios, ~8 min).
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...
	$(GO) run ./e2e/cmd/loadbench -nodes 50 -pods 30 -interval 15s -rounds 6 -enrich both -vmagent $(LOADBENCH_ARGS)

.PHONY: bench-large
bench-large: ## Run the 500x30 load test (30s interval, one replica, enrichment on and off, ~10 min).
	$(GO) run ./e2e/cmd/loadbench -nodes 500 -pods 30 -interval 30s -rounds 4 -enrich both $(LOADBENCH_LARGE_ARGS)

.PHONY: bench-apiserver
bench-apiserver: ## 50x30 in kubelet mode, then in apiserver mode (node proxy, the relay's defaults), each steady then with a third of the pods replaced every round (-churn); enrichment on (~5 min, root).
	$(GO) run ./e2e/cmd/loadbench -nodes 50 -pods 30 -interval 15s -rounds 4 -enrich on -kubelet-gzip -mode kubelet,apiserver -churn 0.33 \
		-out .bench/loadbench-apiserver-50x30.txt $(LOADBENCH_ARGS)

.PHONY: bench-outage
bench-outage: ## Receiver down 10 min at the 50x30 profile with the disk queue: drain rate, every sample delivered in order (~25 min).
	$(GO) run ./e2e/cmd/loadbench -nodes 50 -pods 30 -interval 15s -disk-queue -receiver-outage 10m \
		-out .bench/loadbench-outage-50x30.txt $(LOADBENCH_ARGS)

# ---- Packaging and deployment (deploy/, dist/chart, Dockerfile) ----
include hack/tools.mk
KUBECTL ?= kubectl
CONTAINER_TOOL ?= docker
# The kustomization that deploy, undeploy and build-installer use, relative to the repo root.
KUSTOMIZE_DIR ?= deploy/kustomize/base
IMG_KUSTOMIZATION := $(CURDIR)/tmp/kustomize-img
INSTALLER ?= dist/install.yaml

.PHONY: lint
lint: $(STATICCHECK) ## gofmt -l, go vet and staticcheck.
	@out=$$(gofmt -l $$($(GO) list -f '{{.Dir}}' ./...)); if [ -n "$$out" ]; then echo "gofmt -l:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

.PHONY: docker-build
docker-build: ## Build the container image IMG (needs a container engine).
	$(CONTAINER_TOOL) build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the container image IMG.
	$(CONTAINER_TOOL) push $(IMG)

# A throw-away kustomization (git-ignored tmp/) over KUSTOMIZE_DIR with the image set to IMG.
.PHONY: kustomize-img
kustomize-img: $(KUSTOMIZE)
	@rm -rf $(IMG_KUSTOMIZATION) && mkdir -p $(IMG_KUSTOMIZATION)
	cd $(IMG_KUSTOMIZATION) && $(KUSTOMIZE) create --resources ../../$(KUSTOMIZE_DIR) && $(KUSTOMIZE) edit set image kubelet-meta-proxy=$(IMG)

.PHONY: build-installer
build-installer: kustomize-img ## Write dist/install.yaml (INSTALLER): KUSTOMIZE_DIR (the base) with the image IMG.
	@mkdir -p $(dir $(INSTALLER))
	$(KUSTOMIZE) build $(IMG_KUSTOMIZATION) > $(INSTALLER)
	@echo "wrote $(INSTALLER) from $(KUSTOMIZE_DIR) with image $(IMG)"

.PHONY: deploy
deploy: kustomize-img ## Apply KUSTOMIZE_DIR (default the base) with the image IMG to the current kubectl context.
	$(KUSTOMIZE) build $(IMG_KUSTOMIZATION) | $(KUBECTL) apply -f -

.PHONY: undeploy
undeploy: kustomize-img ## Delete what deploy applied.
	$(KUSTOMIZE) build $(IMG_KUSTOMIZATION) | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: helm-lint
helm-lint: $(HELM) ## helm lint the chart (dist/chart) with its defaults and each dist/chart/ci/*-values.yaml.
	$(HELM) lint --strict dist/chart
	@set -e; for f in dist/chart/ci/*-values.yaml; do echo "$(HELM) lint --strict dist/chart --values $$f"; $(HELM) lint --strict dist/chart --values $$f; done

##@ Self-monitoring mixin (mixin/: alerts, their promtool tests, dashboards, runbook)

# mixin/ is the one source; the chart (dist/chart/files) and the kustomize component (components/mixin) get
# copies, which `go test ./mixin/` checks are current.
MIXIN_COMPONENT := deploy/kustomize/components/mixin

.PHONY: mixin
mixin: ## Copy mixin/alerts.yaml and mixin/dashboards into the Helm chart and the kustomize component.
	@mkdir -p dist/chart/files/dashboards $(MIXIN_COMPONENT)/dashboards
	cp mixin/alerts.yaml dist/chart/files/alerts.yaml
	cp mixin/dashboards/*.json dist/chart/files/dashboards/
	cp mixin/dashboards/*.json $(MIXIN_COMPONENT)/dashboards/
	{ printf '%s\n' \
	  '# Generated by `make mixin` from mixin/alerts.yaml: edit that file and run `make mixin`.' \
	  'apiVersion: monitoring.coreos.com/v1' 'kind: PrometheusRule' 'metadata:' '  name: kubelet-meta-proxy' \
	  '  namespace: kubelet-meta-proxy' '  labels:' '    app.kubernetes.io/name: kubelet-meta-proxy' 'spec:'; \
	  sed -e 's/^\(.\)/  \1/' mixin/alerts.yaml; } > $(MIXIN_COMPONENT)/prometheusrule.yaml

.PHONY: mixin-lint
mixin-lint: ## promtool check and test of the alerts; Grafana schema and lint of the dashboards; copies current.
	promtool check rules mixin/alerts.yaml
	promtool test rules mixin/tests/*.yaml
	$(GO) test -count=1 ./mixin/

##@ End-to-end test bed (e2e/bed: real etcd, kube-apiserver, fake kubelets in a netns, Prometheus, Alertmanager)

.PHONY: e2e
e2e: ## Run the end-to-end tests (root; builds bin/kube-apiserver and bin/etcd once, ~5 min the first time).
	$(GO) test -count=1 -timeout 40m -v ./e2e/

.PHONY: demo
demo: build ## Bring the bed up with the relay in the background (state in .demo/), print URLs, a query and an alert.
	bash hack/build-kube.sh
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/fake-kubelet ./e2e/cmd/fake-kubelet
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/kmp-bed ./e2e/cmd/bed
	$(BIN)/kmp-bed up --state .demo --background

.PHONY: demo-down
demo-down: ## Stop the demo: kill every process, remove the netns and .demo/.
	@if [ -x $(BIN)/kmp-bed ]; then $(BIN)/kmp-bed down --state .demo; \
	else $(GO) run ./e2e/cmd/bed down --state .demo; fi
