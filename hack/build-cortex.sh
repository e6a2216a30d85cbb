#!/usr/bin/env bash
# Builds the receivers the e2e bed starts only for the tests that ask for them, into bin/ at
# the repository root; each is skipped when bin/NAME exists with a matching stamp
# (bin/.NAME.stamp holds the pinned version).
#   cortex              Cortex (pinned in hack/cortex/go.mod, a wrapper module repeating the
#                       replace/exclude lines of Cortex's go.mod; tags netgo,slicelabels as
#                       Cortex's Makefile: without slicelabels the ingester panics on the
#                       first push). ~3 min on 2 cores the first time, 1.3 GB module cache.
#   kube-state-metrics  pinned in hack/ksm/go.mod (~1-2 min).
# Usage: hack/build-cortex.sh [cortex] [kube-state-metrics]   (no argument: both)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${BIN:-$ROOT/bin}"
export CGO_ENABLED=0 GOWORK=off
mkdir -p "$BIN"

fresh() { # name version: is bin/name built at version?
	[ -x "$BIN/$1" ] && [ "$(cat "$BIN/.$1.stamp" 2>/dev/null)" = "$2" ]
}

build_cortex() {
	local ver
	ver="$(awk '$1 == "require" && $2 == "github.com/cortexproject/cortex" { print $3; exit }
		$1 == "github.com/cortexproject/cortex" { print $2; exit }' "$ROOT/hack/cortex/go.mod")"
	if fresh cortex "$ver"; then
		echo "build-cortex: cortex $ver already built"
		return
	fi
	echo "build-cortex: building cortex $ver ..."
	local start=$SECONDS
	(cd "$ROOT/hack/cortex" && GOFLAGS=-mod=mod go build -trimpath -tags "netgo slicelabels" \
		-ldflags "-s -w -X main.Version=${ver#v} -X main.Branch=release -X main.Revision=$ver" \
		-o "$BIN/cortex.tmp" github.com/cortexproject/cortex/cmd/cortex)
	mv "$BIN/cortex.tmp" "$BIN/cortex"
	echo "$ver" >"$BIN/.cortex.stamp"
	echo "build-cortex: cortex built in $((SECONDS - start))s"
}

build_ksm() {
	local ver
	ver="$(awk '$1 == "require" && $2 == "k8s.io/kube-state-metrics/v2" { print $3; exit }' "$ROOT/hack/ksm/go.mod")"
	if fresh kube-state-metrics "$ver"; then
		echo "build-cortex: kube-state-metrics $ver already built"
		return
	fi
	echo "build-cortex: building kube-state-metrics $ver ..."
	local start=$SECONDS
	# From the wrapper module hack/ksm: `go install k8s.io/kube-state-metrics/v2@VERSION` asks the
	# proxy for the version list, which this environment's proxy refuses.
	(cd "$ROOT/hack/ksm" && GOFLAGS=-mod=mod go build -trimpath \
		-ldflags "-s -w -X github.com/prometheus/common/version.Version=${ver#v} -X github.com/prometheus/common/version.Branch=release -X github.com/prometheus/common/version.Revision=$ver" \
		-o "$BIN/kube-state-metrics.tmp" k8s.io/kube-state-metrics/v2)
	mv "$BIN/kube-state-metrics.tmp" "$BIN/kube-state-metrics"
	echo "$ver" >"$BIN/.kube-state-metrics.stamp"
	echo "build-cortex: kube-state-metrics built in $((SECONDS - start))s"
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(cortex kube-state-metrics)
for t in "${targets[@]}"; do
	case "$t" in
	cortex) build_cortex ;;
	kube-state-metrics | ksm) build_ksm ;;
	*) echo "build-cortex: unknown target $t (cortex, kube-state-metrics)" >&2; exit 2 ;;
	esac
done
