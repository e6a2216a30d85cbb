// Package scrape finds and reads targets: node discovery (an informer) and
// static targets, sharding, fetching through the kube-apiserver node proxy
// or straight from the kubelet, and the payload scanners (a hand-written
// text-format scanner, TextScanner, and the reference OpenMetrics parser
// behind the same Scanner interface). It knows nothing of remote write or
// of the relay's caches.
package scrape
