# Build tools, each from the Go module proxy at a pinned version into bin/ (nothing is downloaded any other way).
# bin/NAME-VERSION is the real binary and bin/NAME a symlink to it, so changing a version here rebuilds it.
KUSTOMIZE_VERSION ?= v5.8.1
HELM_VERSION ?= v3.22.0
STATICCHECK_VERSION ?= v0.8.2
# Stamped as helm's release Makefile does: its version, and the Kubernetes version of its client-go (k8s.io/* v0.37
# in helm v3.22) that `helm template`/`helm lint` assume without a cluster (unstamped it would be v1.20).
HELM_K8S_MINOR ?= 37
HELM_LDFLAGS := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_K8S_MINOR) \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_K8S_MINOR)

KUSTOMIZE ?= $(BIN)/kustomize
HELM ?= $(BIN)/helm
STATICCHECK ?= $(BIN)/staticcheck

.PHONY: tools
tools: $(KUSTOMIZE) $(HELM) $(STATICCHECK) ## Install kustomize, helm and staticcheck (pinned) into bin/.

$(KUSTOMIZE): $(BIN)/kustomize-$(KUSTOMIZE_VERSION)
$(HELM): $(BIN)/helm-$(HELM_VERSION)
$(STATICCHECK): $(BIN)/staticcheck-$(STATICCHECK_VERSION)

$(BIN)/kustomize-$(KUSTOMIZE_VERSION):
	$(call go-install-tool,kustomize,sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))
$(BIN)/helm-$(HELM_VERSION):
	$(call go-install-tool,helm,helm.sh/helm/v3/cmd/helm,$(HELM_VERSION),-ldflags '$(HELM_LDFLAGS)')
$(BIN)/staticcheck-$(STATICCHECK_VERSION):
	$(call go-install-tool,staticcheck,honnef.co/go/tools/cmd/staticcheck,$(STATICCHECK_VERSION))

# go-install-tool NAME, PACKAGE, VERSION[, FLAGS]: GOBIN=bin go install FLAGS PACKAGE@VERSION as bin/NAME-VERSION,
# bin/NAME -> it.
define go-install-tool
@set -e; mkdir -p $(BIN); tmp=$$(mktemp -d); \
echo "go install $(2)@$(3)"; \
GOBIN=$$tmp GOFLAGS= $(GO) install $(4) $(2)@$(3); \
mv $$tmp/$(1) $(BIN)/$(1)-$(3); rmdir $$tmp; \
ln -sf $(1)-$(3) $(BIN)/$(1)
endef
