// Package scrape finds the targets (nodes, plain URLs), fetches their
// exposition, and turns every payload into enriched samples for the two
// outputs: the /metrics view and remote write.
package scrape

import (
	"slices"

	"github.com/prometheus/prometheus/model/relabel"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
)

// Target is one thing to scrape: a node's kubelet, or a plain URL.
type Target struct {
	// Key identifies the target across discovery rounds ("node/NAME" or the URL).
	Key string
	// Node is the node's name; empty for a plain target.
	Node string
	// Address is host:port, the instance label.
	Address string
	// URL is fetched directly in kubelet and plain mode; in apiserver mode
	// Path is fetched through the node proxy instead.
	URL  string
	Path string
	// Endpoint names the kubelet endpoint (KubeletEndpoint.Name); empty
	// for a plain target or a bare path.
	Endpoint string
	// MetricRelabel is applied to every new series (metric_relabel_configs).
	MetricRelabel []*relabel.Config
	// Labels are the target labels (job, instance, node, metrics_path), sorted.
	Labels []enrich.Label
}

// Same reports whether two targets would be scraped identically, so that a
// discovery update that changes nothing keeps the running scrape loop.
func (t *Target) Same(o *Target) bool {
	if t.Key != o.Key || t.Node != o.Node || t.Address != o.Address || t.URL != o.URL || t.Path != o.Path || len(t.Labels) != len(o.Labels) ||
		t.Endpoint != o.Endpoint || !slices.Equal(t.MetricRelabel, o.MetricRelabel) {
		return false
	}
	for i := range t.Labels {
		if t.Labels[i] != o.Labels[i] {
			return false
		}
	}
	return true
}
