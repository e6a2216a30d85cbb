package enrich

import (
	"github.com/prometheus/prometheus/model/labels"
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
	// External labels are added last, to every series, unless it already has
	// a label of the name: the series' own label wins, as with Prometheus's
	// external_labels. Set once, before the first Build.
	External []Label
	scratch  []Label
	// exported caches exported_NAME for the target and namespace label
	// names NAME that clash, bounded: a concatenation per new series
	// that has such a clash otherwise.
	exported map[string]string
}

// Build returns the enriched label set for one scraped label set, sorted by
// name; it is valid until the next call.
//
// Target labels follow Prometheus's honor_labels: false: the target's value
// wins and a clashing scraped label is kept as exported_NAME. Namespace labels
// never overwrite anything: a clashing one is added as exported_NAME. Empty
// values are dropped, as Prometheus treats them as absent.
func (b *Builder) Build(scraped labels.Labels, target, namespace []Label) []Label {
	ls := b.scratch[:0]
	scraped.Range(func(l labels.Label) {
		if l.Value != "" {
			ls = append(ls, Label{Name: l.Name, Value: l.Value})
		}
	})
	return b.build(ls, target, namespace)
}

// BuildFrom is Build for scraped labels in a slice, in any order (but with
// unique names), which must not be the result of an earlier call. It saves
// a relay that has the labels in a slice a labels.Labels per new series.
func (b *Builder) BuildFrom(scraped, target, namespace []Label) []Label {
	ls := b.scratch[:0]
	for _, l := range scraped {
		if l.Value != "" {
			ls = append(ls, l)
		}
	}
	return b.build(ls, target, namespace)
}

// build is Build once ls holds the scraped labels with a value.
func (b *Builder) build(ls, target, namespace []Label) []Label {
	for _, t := range target {
		if i := indexOf(ls, t.Name); i >= 0 {
			ls[i].Name = b.exportedName(ls, t.Name)
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
			name = b.exportedName(ls, name)
		}
		ls = append(ls, Label{Name: name, Value: n.Value})
	}
	b.scratch = b.finish(ls)
	return b.scratch
}

// Release drops the Builder's references to the labels of its last
// result, so that they can be collected (scraped labels may point into a
// large payload).
func (b *Builder) Release() { clear(b.scratch[:cap(b.scratch)]) }

// SeriesOf returns a complete label set (the relay's own series such as
// up) with the external labels, sorted; it is valid until the next call.
func (b *Builder) SeriesOf(ls []Label) []Label {
	b.scratch = b.finish(append(b.scratch[:0], ls...))
	return b.scratch
}

func (b *Builder) finish(ls []Label) []Label {
	for _, e := range b.External {
		if e.Value != "" && indexOf(ls, e.Name) < 0 {
			ls = append(ls, e)
		}
	}
	SortLabels(ls)
	return ls
}

func indexOf(ls []Label, name string) int {
	for i := range ls {
		if ls[i].Name == name {
			return i
		}
	}
	return -1
}

// exportedName is freeName(ls, exported_name).
func (b *Builder) exportedName(ls []Label, name string) string {
	e, ok := b.exported[name]
	if !ok {
		e = exportedPrefix + name
		if b.exported == nil {
			b.exported = make(map[string]string)
		}
		if len(b.exported) < 64 {
			b.exported[name] = e
		}
	}
	return freeName(ls, e)
}

// freeName prefixes name with exported_ until no label has it, as Prometheus
// does for clashing target labels.
func freeName(ls []Label, name string) string {
	for indexOf(ls, name) >= 0 {
		name = exportedPrefix + name
	}
	return name
}
