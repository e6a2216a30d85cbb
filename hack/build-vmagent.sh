#!/usr/bin/env bash
# Builds vmagent, the agent the load test measures the relay against (e2e/loadbench -vmagent),
# into bin/ at the repository root; skipped when bin/vmagent exists with a matching stamp
# (bin/.vmagent.stamp holds the pinned version).
#   vmagent  VictoriaMetrics' app/vmagent at VMAGENT_VERSION (default below), with
#            `go install PACKAGE@VERSION` from the Go module proxy as the issue that asks for the
#            comparison says; CGO left at the go command's default, as the upstream linux/amd64
#            release build (CGO_ENABLED=1). Version stamped the way upstream's Makefile does
#            (lib/buildinfo.Version=vmagent-DATE-tags-VERSION), so `bin/vmagent -version` names it.
#            ~2-3 min on 2 cores the first time.
# Usage: hack/build-vmagent.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${BIN:-$ROOT/bin}"
VMAGENT_VERSION="${VMAGENT_VERSION:-v1.151.0}"
export GOWORK=off
mkdir -p "$BIN"

if [ -x "$BIN/vmagent" ] && [ "$(cat "$BIN/.vmagent.stamp" 2>/dev/null)" = "$VMAGENT_VERSION" ]; then
	echo "build-vmagent: vmagent $VMAGENT_VERSION already built"
	exit 0
fi
echo "build-vmagent: building vmagent $VMAGENT_VERSION ..."
start=$SECONDS
pkg=github.com/VictoriaMetrics/VictoriaMetrics
# The release date of the tag (from the module proxy's .info) stands in for upstream's build date.
date="$(cd / && GOFLAGS= go mod download -json "$pkg@$VMAGENT_VERSION" | awk -F'"' '$2 == "Info" { print $4 }' | xargs cat |
	sed -n 's/.*"Time":"\([0-9-]*\)T\([0-9:]*\)Z".*/\1-\2/p' | tr -d ':-' | sed 's/^\(........\)/\1-/')"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" GOFLAGS= go install -trimpath \
	-ldflags "-s -w -X '$pkg/lib/buildinfo.Version=vmagent-${date:-00000000-000000}-tags-$VMAGENT_VERSION-0'" \
	"$pkg/app/vmagent@$VMAGENT_VERSION"
mv "$tmp/vmagent" "$BIN/vmagent"
echo "$VMAGENT_VERSION" >"$BIN/.vmagent.stamp"
echo "build-vmagent: vmagent $VMAGENT_VERSION built in $((SECONDS - start))s"
