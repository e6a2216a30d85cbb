# Build tools, each from the Go module proxy at a pinned version into bin/ (nothing is downloaded any other way).
# bin/NAME-VERSION is the real binary and bin/NAME a symlink to it, so changing a version here rebuilds it.
KUSTOMIZE_VERSION ?= v5.8.1
HELM_VERSION ?= v3.22.0
STATICCHECK_VERSION ?= v0.8.2

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
	$(call go-install-tool,helm,helm.sh/helm/v3/cmd/helm,$(HELM_VERSION))
$(BIN)/staticcheck-$(STATICCHECK_VERSION):
	$(call go-install-tool,staticcheck,honnef.co/go/tools/cmd/staticcheck,$(STATICCHECK_VERSION))

# go-install-tool NAME, PACKAGE, VERSION: GOBIN=bin go install PACKAGE@VERSION as bin/NAME-VERSION, bin/NAME -> it.
define go-install-tool
@set -e; mkdir -p $(BIN); tmp=$$(mktemp -d); \
echo "go install $(2)@$(3)"; \
GOBIN=$$tmp GOFLAGS= $(GO) install $(2)@$(3); \
mv $$tmp/$(1) $(BIN)/$(1)-$(3); rmdir $$tmp; \
ln -sf $(1)-$(3) $(BIN)/$(1)
endef
