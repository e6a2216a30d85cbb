package relay

import (
	"github.com/prometheus/prometheus/model/labels"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relabeling"
)

// relabel applies the target's metric relabeling to an enriched series, as
// Prometheus applies metric_relabel_configs to a scraped series with its
// target labels. It runs once per new series: the result (or the drop) is
// cached. The returned labels are valid until the next call.
func (c *TargetCache) relabel(ls []enrich.Label) ([]enrich.Label, bool) {
	if c.rb == nil {
		c.rb = labels.NewBuilder(labels.EmptyLabels())
	}
	c.relabelRuns++
	c.rsb.Reset()
	for _, l := range ls {
		c.rsb.Add(l.Name, l.Value)
	}
	c.rsb.Sort()
	c.rb.Reset(c.rsb.Labels())
	if !relabeling.Process(c.rb, c.target.MetricRelabel) {
		return nil, false
	}
	out := c.rscratch[:0]
	c.rb.Range(func(l labels.Label) { out = append(out, enrich.Label{Name: l.Name, Value: l.Value}) })
	enrich.SortLabels(out)
	c.rscratch = out
	return out, true
}
