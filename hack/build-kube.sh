#!/usr/bin/env bash
# Builds the real kube-apiserver and etcd that the e2e test bed runs, into bin/ at the
# repository root, from the pinned versions in hack/kube/go.mod. Skips a binary that is
# already there with a matching stamp (bin/.NAME.stamp holds the pinned version).
# The apiserver takes ~3-5 minutes on 2 cores the first time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${BIN:-$ROOT/bin}"
cd "$ROOT/hack/kube"
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOWORK=off
mkdir -p "$BIN"

version_of() { awk -v m="$1" '$1 == m { print $2; exit }' go.mod; }
K8S_VERSION="$(version_of k8s.io/kubernetes)"
ETCD_VERSION="$(version_of go.etcd.io/etcd/server/v3)"

build() { # name package version
	local name=$1 pkg=$2 ver=$3 stamp="$BIN/.$1.stamp"
	if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$ver" ]; then
		echo "build-kube: $name $ver already built"
		return
	fi
	echo "build-kube: building $name $ver ..."
	local start=$SECONDS
	local ldflags="-s -w"
	if [ "$name" = kube-apiserver ]; then
		# The version the apiserver reports on /version.
		local major minor
		major="$(echo "${ver#v}" | cut -d. -f1)"
		minor="$(echo "${ver#v}" | cut -d. -f2)"
		for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
			ldflags+=" -X $p.gitVersion=$ver -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
		done
	fi
	go build -trimpath -ldflags "$ldflags" -o "$BIN/$name.tmp" "$pkg"
	mv "$BIN/$name.tmp" "$BIN/$name"
	echo "$ver" >"$stamp"
	echo "build-kube: $name built in $((SECONDS - start))s"
}

build etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$K8S_VERSION"
