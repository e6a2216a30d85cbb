// Package enrich turns a scraped series into an enriched one: the target's
// labels (job, instance, node, metrics_path) and the labels of the series'
// Namespace are added, following Prometheus's rules for clashes, and the
// result is encoded once for both outputs (the /metrics view and remote write).
//
// The package is pure: no Kubernetes imports, no I/O. The namespace index it
// reads is an immutable value built elsewhere (internal/nsindex).
package enrich
