package relay

import (
	"bytes"
	"slices"

	commonmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
)

// scrapedLabels returns the labels of the current series, checked as
// checkLabels does (and, with limits, against the label limits), for
// building a series: empty values dropped, in no particular order, valid
// until the next call and, on the fast path, pointing into the payload.
//
// The fast path takes the common shape of a text-format series from the
// scanner without a copy (TextScanner.AppendLabels) and checks it in
// place; it only ever decides that a series is fine. Anything it does not
// accept (a duplicate name, an exceeded limit, another shape) goes the
// reference way, labels.Labels and checkLabels, which then gives the
// error. Building a series this way rather than through labels.Labels
// saves three allocations and two copies of its labels per new series,
// the better part of a first scrape (BenchmarkProcessCold).
func (c *TargetCache) scrapedLabels(sc scrape.Scanner, limits bool) ([]enrich.Label, error) {
	if ts, ok := sc.(*scrape.TextScanner); ok {
		if ls, ok := ts.AppendLabels(c.scraped[:0]); ok {
			c.scraped, c.aliased = ls, true
			if ls, ok = c.fastCheck(ls, limits); ok {
				c.scrapedFast = true
				return ls, nil
			}
		}
	}
	c.scrapedFast = false
	if err := sc.Labels(&c.lbls); err != nil {
		return nil, err
	}
	if err := c.checkLabels(); err != nil {
		return nil, err
	}
	if limits {
		if err := c.limits.checkLabelLimits(c.lbls, len(c.target.Labels)); err != nil {
			return nil, err
		}
	}
	ls := c.scraped[:0]
	c.lbls.Range(func(l labels.Label) { ls = append(ls, enrich.Label{Name: l.Name, Value: l.Value}) })
	c.scraped = ls
	return ls, nil
}

// release drops the references into the scrape's payload the fast path
// left in scratch space (scrapedLabels, the builder's, relabeling's), so
// that a cache does not keep a payload buffer alive after its scrape: an
// outsized one is meant to go to the collector (pools.go).
func (c *TargetCache) release() {
	if !c.aliased {
		return
	}
	c.aliased = false
	clear(c.scraped[:cap(c.scraped)])
	c.builder.Release()
	if c.rb != nil {
		c.rsb, c.rb = labels.ScratchBuilder{}, nil
	}
}

// fastCheck is checkLabels and checkLabelLimits for the labels
// TextScanner.AppendLabels gives: __name__ first with a legacy metric name,
// legacy label names and printable ASCII values, so every name and value
// is valid. What is left to check is that no name is there twice (as the
// reference, before empty values are dropped) and the limits. It drops
// empty values in place; false sends the series the reference way.
func (c *TargetCache) fastCheck(ls []enrich.Label, limits bool) ([]enrich.Label, bool) {
	rest := ls[1:]
	for i := range rest {
		if rest[i].Name == commonmodel.MetricNameLabel {
			return nil, false
		}
		if i > 0 && rest[i-1].Name >= rest[i].Name {
			// Not in order (kubelets write labels sorted): look for a
			// duplicate the slow way, on a bounded number of labels.
			if len(rest) > 64 || hasDuplicateName(rest) {
				return nil, false
			}
			break
		}
	}
	n := 1
	for _, l := range rest {
		if l.Value != "" {
			ls[n] = l
			n++
		}
	}
	ls = ls[:n]
	if limits && c.limits.any() && !c.limits.fastWithin(ls, len(c.target.Labels)) {
		return nil, false
	}
	return ls, true
}

func hasDuplicateName(ls []enrich.Label) bool {
	for i := range ls {
		for j := i + 1; j < len(ls); j++ {
			if ls[i].Name == ls[j].Name {
				return true
			}
		}
	}
	return false
}

// any reports whether a label limit is set.
func (l *Limits) any() bool {
	return l.LabelLimit > 0 || l.LabelNameLengthLimit > 0 || l.LabelValueLengthLimit > 0
}

// fastWithin reports whether ls (empty values dropped) is within the label
// limits; checkLabelLimits says which one it is not.
func (l *Limits) fastWithin(ls []enrich.Label, targetLabels int) bool {
	if l.LabelLimit > 0 && len(ls)+targetLabels > l.LabelLimit {
		return false
	}
	for _, lb := range ls {
		if l.LabelNameLengthLimit > 0 && len(lb.Name) > l.LabelNameLengthLimit ||
			l.LabelValueLengthLimit > 0 && len(lb.Value) > l.LabelValueLengthLimit {
			return false
		}
	}
	return true
}

// labelValue is labels.Labels.Get for a label slice.
func labelValue(ls []enrich.Label, name string) string {
	for _, l := range ls {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

// reserve sizes a cache that knows no series for the payload body, which
// is about to be parsed: its lines but comments bound the series it holds.
// Growing the entries, the index and the scrape's slices from nothing,
// doubling as a first scrape goes, copied and freed each about twice as
// much again.
func (c *TargetCache) reserve(st *scrapeState, body []byte) {
	n := bytes.Count(body, []byte{'\n'}) + 1 - bytes.Count(body, []byte("\n#"))
	if len(body) > 0 && body[0] == '#' {
		n--
	}
	if c.limits.SampleLimit > 0 {
		n = min(n, c.limits.SampleLimit)
	}
	c.entries.reserve(n)
	c.cur = slices.Grow(c.cur, n)
	c.created = slices.Grow(c.created, n)
	c.send = slices.Grow(c.send, n+numSelfFamilies)
	st.view.Samples = slices.Grow(st.view.Samples, n+numSelfFamilies)
	c.index.reserve(n, &c.entries)
}

// reserve makes room for n entries in all.
func (x *entryIndex) reserve(n int, entries *entryStore) {
	if 2*(n+1) > len(x.slots) {
		x.live = n // what rehash sizes the table for; it counts the entries again
		x.rehash(entries)
	}
}
