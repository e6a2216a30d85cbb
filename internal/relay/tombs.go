package relay

import (
	"math/bits"

	"github.com/cespare/xxhash/v2"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// tombstones holds a target's tombstones (stale.go) grouped by the pod of
// their label set (podKey). Every new series looks for its tombstone, and
// under pod churn nearly all new series are a new pod's, which has none: the
// pod's group is looked up in a map of a few hundred pods, and the label
// set is hashed and its tombstone looked for only when the group exists.
// One map of every tombstone cost a label hash and a miss in a map of tens
// of thousands per new series, an insertion into it per series evicted, and
// a sweep over all of them; a group is appended to, and swept by its oldest
// tombstones (written first, they expire first).
type tombstones struct {
	pods map[uint64]*podTombs
	n    int // tombstones held
	// The group last written to: eviction writes a pod's series in turn.
	lastKey uint64
	last    *podTombs
}

// podTombs is one pod's tombstones, in the order written: expires never
// decreases along list, with a clock that does not go back (one that does
// only keeps some of them longer).
type podTombs struct {
	list []tomb
	// index has the last timestamp of each hash of a long list, built at
	// its first lookup and kept up to date until the list is swept.
	index map[uint64]int64
}

// tomb is one series' tombstone: the last timestamp of label set hash h
// (model.LabelTable.Hash), kept until expires (milliseconds since the
// epoch, as t). It holds no pointer: a target under pod churn keeps tens of
// thousands of them, which the garbage collector then need not scan.
type tomb struct {
	h          uint64
	t, expires int64
}

// tombIndexAfter is how long a group's list gets before lookups go through
// an index rather than a scan.
const tombIndexAfter = 16

// len is the number of tombstones held.
func (s *tombstones) len() int { return s.n }

// add records that the series of pod key pod and label hash h ended at t.
// A hash written again keeps its latest (largest) timestamp.
func (s *tombstones) add(pod, h uint64, t, expires int64) {
	g := s.last
	if g == nil || s.lastKey != pod {
		if s.pods == nil {
			s.pods = make(map[uint64]*podTombs)
		}
		if g = s.pods[pod]; g == nil {
			// Room for as many as a pod has on average: a pod's series
			// are evicted together, and its list would grow by doubling.
			n := 4
			if len(s.pods) > 0 {
				n = min(max(n, s.n/len(s.pods)), 512)
			}
			g = &podTombs{list: make([]tomb, 0, n)}
			s.pods[pod] = g
		}
		s.lastKey, s.last = pod, g
	}
	g.list = append(g.list, tomb{h: h, t: t, expires: expires})
	s.n++
	if g.index != nil {
		if old, ok := g.index[h]; !ok || t > old {
			g.index[h] = t
		}
	}
}

// group returns the tombstones of pod key pod, nil if it has none: then the
// series has none either, and its label hash need not be computed.
func (s *tombstones) group(pod uint64) *podTombs {
	if s.n == 0 {
		return nil
	}
	return s.pods[pod]
}

// find returns the last timestamp of the series of label hash h, if it has
// a tombstone in g.
func (g *podTombs) find(h uint64) (int64, bool) {
	if g.index == nil && len(g.list) > tombIndexAfter {
		g.index = make(map[uint64]int64, len(g.list))
		for _, tb := range g.list {
			if old, ok := g.index[tb.h]; !ok || tb.t > old {
				g.index[tb.h] = tb.t
			}
		}
	}
	if g.index != nil {
		t, ok := g.index[h]
		return t, ok
	}
	t, found := int64(0), false
	for _, tb := range g.list {
		if tb.h == h && (!found || tb.t > t) {
			t, found = tb.t, true
		}
	}
	return t, found
}

// sweep drops the tombstones expired at nowMs.
func (s *tombstones) sweep(nowMs int64) {
	for key, g := range s.pods {
		k := 0
		for k < len(g.list) && nowMs > g.list[k].expires {
			k++
		}
		s.dropOldest(key, g, k)
	}
}

// capAt drops tombstones, the oldest of arbitrary pods, until at most
// limit are left.
func (s *tombstones) capAt(limit int) {
	for key, g := range s.pods {
		if s.n <= limit {
			return
		}
		s.dropOldest(key, g, min(len(g.list), s.n-limit))
	}
}

// dropOldest drops the first k tombstones of group g (of pod key key).
func (s *tombstones) dropOldest(key uint64, g *podTombs, k int) {
	if k == 0 {
		return
	}
	s.n -= k
	if k == len(g.list) {
		delete(s.pods, key)
		if s.last == g {
			s.last = nil
		}
		return
	}
	rest := len(g.list) - k
	if cap(g.list) > 4*rest {
		g.list = append([]tomb(nil), g.list[k:]...) // a pod's burst is gone: give its room back
	} else {
		g.list = g.list[:copy(g.list, g.list[k:])]
	}
	g.index = nil
}

// each calls f for every tombstone.
func (s *tombstones) each(f func(pod uint64, tb tomb)) {
	for key, g := range s.pods {
		for _, tb := range g.list {
			f(key, tb)
		}
	}
}

// podKey is what groups tombstones: a hash of the values of a label set's
// namespace and pod labels ("" if it has none). It depends on the set
// alone, as the tombstone's hash does, so that metric relabeling, external
// or target labels cannot give a series another pod key than its tombstone.
func podKey(ns, pod uint64) uint64 { return ns ^ bits.RotateLeft64(pod, 29)*0x9e3779b97f4a7c15 }

// podKeyOf is the pod key of a label set about to be interned.
func podKeyOf(ls []model.Label) uint64 {
	ns, pod := "", ""
	for _, l := range ls {
		switch l.Name {
		case enrich.NamespaceLabel:
			ns = l.Value
		case PodLabel:
			pod = l.Value
		}
	}
	return podKey(xxhash.Sum64String(ns), xxhash.Sum64String(pod))
}

// tombKeys returns the label hash (model.LabelTable.Hash) and pod key of an
// interned label set. Eviction calls it for every series gone: the labels
// are read from the encoding just hashed, not from the table a second time.
func tombKeys(t *model.LabelTable, ref model.SeriesRef) (h, pod uint64) {
	var buf [1024]byte // as LabelTable.Hash's
	enc := t.AppendEncoded(buf[:0], ref)
	ns, p, ok := nsPodOf(enc)
	if !ok {
		ns, p = nil, nil
		for it := t.Labels(ref); it.Next(); {
			switch string(it.Name) {
			case enrich.NamespaceLabel:
				ns = it.Value
			case PodLabel:
				p = it.Value
			}
		}
	}
	return xxhash.Sum64(enc), podKey(xxhash.Sum64(ns), xxhash.Sum64(p))
}

// nsPodOf returns the values of the namespace and pod labels of encoded
// labels in the common shape (model.AppendLabel's, lengths under 128);
// false for any other.
func nsPodOf(enc []byte) (ns, pod []byte, ok bool) {
	for len(enc) > 0 {
		if len(enc) < 6 || enc[0] != 0x0a || enc[1] >= 0x80 || enc[2] != 0x0a || enc[3] >= 0x80 {
			return nil, nil, false
		}
		size, n := 2+int(enc[1]), int(enc[3])
		if size > len(enc) || 6+n > size || enc[4+n] != 0x12 || enc[5+n] >= 0x80 || 6+n+int(enc[5+n]) != size {
			return nil, nil, false
		}
		switch name := enc[4 : 4+n]; {
		case n == len(enrich.NamespaceLabel) && string(name) == enrich.NamespaceLabel:
			ns = enc[6+n : size]
		case n == len(PodLabel) && string(name) == PodLabel:
			pod = enc[6+n : size]
		}
		enc = enc[size:]
	}
	return ns, pod, true
}
