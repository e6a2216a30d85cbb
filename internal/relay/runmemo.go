package relay

import (
	"bytes"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	commonmodel "github.com/prometheus/common/model"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// A kubelet writes each container's labels the same way in every metric
// family: `container_cpu_usage_seconds_total{container="app",id=...}` and
// `container_memory_rss{container="app",id=...}` differ only in their name.
// Once a series is built, the next one with the same label part (the text
// from '{') is that series with another __name__: the same scope and the
// same run of labels after __name__ (model.SeriesRef.Rest), so it needs its
// name interned, not its labels read, enriched, sorted and interned again.
// Under pod churn (every new pod's ~50 series a container, one per family)
// and on a first scrape, that is most new series.
//
// The memo holds the label parts of the series built in the current scrape
// only (they are not seen again once in the cache), and only where the
// labels alone decide the set: no metric relabeling (its rules see the
// name) and no label limits (they count the name's length too). A compaction
// renumbers runs: it empties the memo.

// runMemo is what a built series' label part gives the next series with
// the same one.
type runMemo struct {
	pod     uint64 // the pod key of the sets (tombs.go): __name__ is neither label it reads
	n       uint32 // length of the label part (guards the 64-bit key)
	rest    uint32 // model.SeriesRef.Rest
	scope   uint32 // seriesEntry.ns
	valid   bool   // the set is valid (model.SeriesRef.Valid), whatever its (legacy) name
	changed uint16 // the scope's scope.changed when built
}

// runMemoKeep is how many series a scrape (not a first) must have created
// for the memo's table to be kept (emptied) for the next scrape rather than
// dropped.
const runMemoKeep = 256

// memoPart returns the metric name and the label part of a raw text series,
// if the memo may serve it: a legacy name (never quoted, never with a
// '{'), then labels.
func (c *TargetCache) memoPart(raw []byte) (name, part []byte, ok bool) {
	if len(c.target.MetricRelabel) > 0 || c.limits.any() {
		return nil, nil, false
	}
	b := bytes.IndexByte(raw, '{')
	if b <= 0 || !enrich.IsLegacyMetricName(raw[:b]) {
		return nil, nil, false
	}
	return raw[:b], raw[b:], true
}

// fromMemo builds entry i, new, for series h named name whose label part
// the memo knows as m: false (nothing done) if m's scope changed since.
func (c *TargetCache) fromMemo(m runMemo, name []byte, fam int32, h uint64, rawLen int) (uint32, bool) {
	sc := &c.scopes.list[0]
	if m.scope != 0 {
		if int(m.scope) >= len(c.scopes.list) {
			return 0, false
		}
		if sc = &c.scopes.list[m.scope]; sc.refs <= 0 || sc.changed != m.changed {
			return 0, false
		}
		sc.refs++
	}
	i := c.allocEntry()
	e := c.entries.at(i)
	*e = seriesEntry{key: h, rawLen: rawLenOf(rawLen), fam: fam, lastT: noTimestamp, seen: c.iter - 1, flags: liveBit, ns: m.scope}
	e.setEnrich(sc.state)
	// The name is only read (its encoding is copied into the table).
	e.ref = c.labels.WithRest(model.Label{Name: commonmodel.MetricNameLabel, Value: unsafe.String(&name[0], len(name))}, m.rest, m.valid)
	c.lookupTombstone(e, m.pod)
	c.memoBuilt++
	return i, true
}

// remember records the label part of entry e, just built from scraped
// labels by the fast path with __name__ first in its set.
func (c *TargetCache) remember(key uint64, part []byte, e *seriesEntry) {
	if c.runs == nil {
		c.runs = make(map[uint64]runMemo)
	}
	c.runs[key] = runMemo{pod: c.builtPod, n: uint32(len(part)), rest: e.ref.Rest, scope: e.ns, changed: c.scopes.list[e.ns].changed, valid: e.ref.Valid()}
}

// memoKey is the memo's key of a label part.
func memoKey(part []byte) uint64 { return xxhash.Sum64(part) }

// endMemo forgets the scrape's label parts. A target under pod churn keeps
// the table for the next scrape's; not after a first scrape, whose table
// has every label part of the target and is seldom needed again (every
// target's first scrape comes within one interval: the relay's peak heap).
func (c *TargetCache) endMemo(first bool) {
	if c.runs == nil {
		return
	}
	if !first && len(c.created) >= runMemoKeep && len(c.runs) > 0 {
		clear(c.runs)
	} else {
		c.runs = nil
	}
}
