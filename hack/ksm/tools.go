//go:build tools

// Package ksm pins the kube-state-metrics version that the e2e test bed runs against its
// kube-apiserver. `go install k8s.io/kube-state-metrics/v2@VERSION` would do, but it asks the
// module proxy for the module's version list (deprecation check), which this machine's proxy
// refuses (403); building from a module that requires the version needs only the version.
// hack/build-cortex.sh builds bin/kube-state-metrics from here.
package ksm

import _ "k8s.io/kube-state-metrics/v2"
