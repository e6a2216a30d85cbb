//go:build tools

// Package kube pins the versions of kube-apiserver and etcd that the e2e test bed
// runs. It is its own module so the main module's ./... never builds Kubernetes.
// hack/build-kube.sh builds the binaries from here.
package kube

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
