package enrich

import (
	"github.com/prometheus/prometheus/model/labels"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/pkg/remotewrite"
)

// NamespaceLabel is the label whose value names a series' Namespace.
const NamespaceLabel = "namespace"

// exportedPrefix is what Prometheus puts in front of a scraped label that
// clashes with a target label (honor_labels: false).
const exportedPrefix = "exported_"

// Builder builds enriched series. It keeps scratch space between calls, so
// one Builder serves one goroutine. Building happens once per new series, not
// per sample: callers cache the result.
type Builder struct {
	scratch []Label
	buf     []byte
}

// Build returns the enriched series for one scraped label set.
//
// Target labels follow Prometheus's honor_labels: false: the target's value
// wins and a clashing scraped label is kept as exported_NAME. Namespace labels
// never overwrite anything: a clashing one is added as exported_NAME. Empty
// values are dropped, as Prometheus treats them as absent.
func (b *Builder) Build(scraped labels.Labels, target, namespace []Label) *remotewrite.Series {
	ls := b.scratch[:0]
	scraped.Range(func(l labels.Label) {
		if l.Value != "" {
			ls = append(ls, Label{Name: l.Name, Value: l.Value})
		}
	})
	for _, t := range target {
		if i := indexOf(ls, t.Name); i >= 0 {
			ls[i].Name = freeName(ls, exportedPrefix+t.Name)
		}
		if t.Value != "" {
			ls = append(ls, t)
		}
	}
	for _, n := range namespace {
		if n.Value == "" {
			continue
		}
		name := n.Name
		if indexOf(ls, name) >= 0 {
			name = freeName(ls, exportedPrefix+name)
		}
		ls = append(ls, Label{Name: name, Value: n.Value})
	}
	SortLabels(ls)
	b.scratch = ls
	return b.encode(ls)
}

// SeriesOf encodes an already complete, sorted label set (for the relay's own
// series such as up).
func (b *Builder) SeriesOf(ls []Label) *remotewrite.Series {
	sorted := append(b.scratch[:0], ls...)
	SortLabels(sorted)
	b.scratch = sorted
	return b.encode(sorted)
}

func (b *Builder) encode(ls []Label) *remotewrite.Series {
	buf := b.buf[:0]
	for _, l := range ls {
		buf = remotewrite.AppendLabel(buf, l.Name, l.Value)
	}
	b.buf = buf
	return remotewrite.NewSeries(buf)
}

func indexOf(ls []Label, name string) int {
	for i := range ls {
		if ls[i].Name == name {
			return i
		}
	}
	return -1
}

// freeName prefixes name with exported_ until no label has it, as Prometheus
// does for clashing target labels.
func freeName(ls []Label, name string) string {
	for indexOf(ls, name) >= 0 {
		name = exportedPrefix + name
	}
	return name
}
