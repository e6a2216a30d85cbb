package relay

import (
	"strconv"
	"strings"
	"time"
	"unique"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/podindex"
)

// PodLabel is the label whose value names a series' Pod (with NamespaceLabel).
const PodLabel = "pod"

// NodeCheck says what becomes of a node target's series that name a pod the
// apiserver does not place on the scraped node.
type NodeCheck uint8

const (
	// NodeCheckOff: no check.
	NodeCheckOff NodeCheck = iota
	// NodeCheckPlain: the series keeps its own and the target's labels and
	// gets no namespace- or pod-derived label.
	NodeCheckPlain
	// NodeCheckDrop: the series is dropped.
	NodeCheckDrop
)

func (n NodeCheck) String() string {
	switch n {
	case NodeCheckPlain:
		return "plain"
	case NodeCheckDrop:
		return "drop"
	default:
		return "off"
	}
}

// Precedence says which source keeps a label name that both a namespace
// label and a pod label (or workload/workload_type) map to. The other one
// is renamed NAME_conflictN (the smallest N no other label has), so nothing
// is lost silently and no name appears twice.
type Precedence uint8

const (
	// NamespaceFirst: the namespace's label keeps the name. The default:
	// namespace labels are set by whoever administers the namespace, pod
	// labels by anyone who may create pods in it, and alerts route on the
	// namespace's team.
	NamespaceFirst Precedence = iota
	// PodFirst: the pod's label keeps the name.
	PodFirst
)

func (p Precedence) String() string {
	if p == PodFirst {
		return "pod"
	}
	return "namespace"
}

// PodSource gives the current pod snapshot (podindex.Index).
type PodSource interface {
	Snapshot() *podindex.Snapshot
}

// PodConfig configures pod enrichment and the pod-on-node check. The zero
// value turns both off.
type PodConfig struct {
	// Source is the pod index; nil turns pod enrichment and the check off.
	Source PodSource
	// Check applies to node targets (kubelets) only: plain targets (say
	// kube-state-metrics) report pods of every node.
	Check      NodeCheck
	Precedence Precedence
}

// scopeKey is what a series' added labels depend on: its namespace and, with
// the pod index on, its pod.
type scopeKey struct{ ns, pod string }

// scope is the enrichment state of every series of one target with the same
// namespace (and pod). Series refer to it by index (seriesEntry.ns); a
// series is rebuilt only when its own scope changed after the series was
// last seen (changedSince).
type scope struct {
	// Fields ordered so that no padding is left: 64 bytes, one per pod and
	// target with the pod index on.
	key scopeKey

	// The inputs add was computed from.
	nsVer, podVer uint64

	refs              int32       // live cache entries that refer to it
	state             enrichState // enrichHit and enrichUnknown: labels() has the labels to add
	nsFound, podFound bool
	verdict           podindex.Verdict
	// changed is the scrape (TargetCache.iter) whose begin last changed
	// the scope's inputs; a new scope's is the scrape before its first.
	// It is never more than maxChangedAge scrapes old (begin), so that
	// its age does not wrap.
	changed uint16
}

// scopeTable holds the scopes of one target. [0] is the scope of series
// without a namespace label: nothing added.
type scopeTable struct {
	cfg       PodConfig
	checkNode string // the node whose pods the check expects; "" no check
	list      []scope
	index     map[scopeKey]uint32
	free      []uint32
	epoch     uint64 // changes whenever an existing scope changes
	iter      uint16 // the scrape in progress (TargetCache.iter)
	nsGen     uint64
	podGen    uint64
	refreshed bool

	// The scrape in progress.
	ns     *enrich.NamespaceIndex
	pods   *podindex.Snapshot
	now    time.Time
	merge  []enrich.Label // labels()'s scratch
	podBuf []enrich.Label // labels()'s scratch: the pod's labels with its workload
}

func newScopeTable() scopeTable {
	return scopeTable{list: make([]scope, 1), index: map[scopeKey]uint32{}}
}

// SetPods turns pod enrichment (and, for a node target, the pod-on-node
// check) on for this target. Call it before the first scrape.
func (c *TargetCache) SetPods(cfg PodConfig) {
	s := &c.scopes
	s.cfg = cfg
	s.checkNode = ""
	if cfg.Source != nil && cfg.Check != NodeCheckOff && c.target.Node != "" {
		s.checkNode = c.target.Node
	}
}

// begin takes the scrape's snapshots and refreshes the scopes if anything
// they depend on may have changed: either snapshot's generation, or, with
// the check on, the clock (grace periods end without any event). iter is
// the scrape's number (TargetCache.iter). It returns the generation series
// compare against (seriesEntry.gen).
func (s *scopeTable) begin(ix *enrich.NamespaceIndex, now time.Time, iter uint16) uint64 {
	s.ns, s.now, s.iter = ix, now, iter
	if s.cfg.Source != nil {
		s.pods = s.cfg.Source.Snapshot()
	}
	if iter%sweepEvery == 0 {
		// Keep every changed within maxChangedAge scrapes: older, it
		// is older than any live entry's seen either way.
		for i := 1; i < len(s.list); i++ {
			if sc := &s.list[i]; iter-sc.changed > maxChangedAge {
				sc.changed = iter - maxChangedAge
			}
		}
	}
	nsGen, podGen := ix.Generation(), s.pods.Generation()
	if s.refreshed && nsGen == s.nsGen && podGen == s.podGen && s.checkNode == "" {
		return s.epoch
	}
	s.nsGen, s.podGen, s.refreshed = nsGen, podGen, true
	changed := false
	for i := 1; i < len(s.list); i++ {
		if s.list[i].refs > 0 && s.refresh(&s.list[i]) {
			changed = true
		}
	}
	if changed {
		s.epoch++
	}
	return s.epoch
}

// intern returns the scope of a new series (0 for none) and counts the
// reference.
func (s *scopeTable) intern(ns, pod string) uint32 {
	if ns == "" {
		return 0
	}
	if s.cfg.Source == nil {
		pod = "" // without the pod index, one scope per namespace
	}
	if i, ok := s.index[scopeKey{ns, pod}]; ok {
		s.list[i].refs++
		return i
	}
	// Namespaces repeat in every pod's key: one copy of each. A pod the
	// index knows shares the index's copy of its name.
	k := scopeKey{ns: unique.Make(ns).Value()}
	if pod != "" {
		var ok bool
		if k.pod, ok = s.pods.PodName(ns, pod); !ok {
			k.pod = strings.Clone(pod)
		}
	}
	var i uint32
	if n := len(s.free); n > 0 {
		i, s.free = s.free[n-1], s.free[:n-1]
	} else {
		i = uint32(len(s.list))
		s.list = append(s.list, scope{})
	}
	s.list[i] = scope{key: k, refs: 1}
	s.index[k] = i
	s.compute(&s.list[i])
	s.list[i].changed = s.iter - 1 // its series are built from what compute found
	return i
}

// release drops a reference of an evicted series; a scope nobody refers to
// is forgotten, so that pods come and go without the table growing.
func (s *scopeTable) release(i uint32) {
	if i == 0 {
		return
	}
	sc := &s.list[i]
	if sc.refs--; sc.refs > 0 {
		return
	}
	delete(s.index, sc.key)
	*sc = scope{}
	s.free = append(s.free, i)
}

// refresh recomputes sc if its inputs changed, and reports whether they did.
func (s *scopeTable) refresh(sc *scope) bool {
	nsInfo, nsOK := s.ns.Lookup(sc.key.ns)
	podInfo, podOK, verdict := s.podState(sc.key)
	if nsOK == sc.nsFound && nsInfo.Version == sc.nsVer && podOK == sc.podFound && podInfo.Version == sc.podVer && verdict == sc.verdict {
		return false
	}
	s.compute(sc)
	return true
}

func (s *scopeTable) podState(k scopeKey) (podindex.PodInfo, bool, podindex.Verdict) {
	if s.pods == nil || k.pod == "" {
		return podindex.PodInfo{}, false, podindex.Yes
	}
	info, ok := s.pods.Lookup(k.ns, k.pod)
	verdict := podindex.Yes
	if s.checkNode != "" {
		verdict = s.pods.OnNode(k.ns, k.pod, s.checkNode, s.now)
	}
	return info, ok, verdict
}

// compute records sc's inputs and marks it changed in this scrape.
//
// A pod the apiserver places elsewhere (verdict No) gets nothing. Unknown
// (the index may have missed the pod: just after the start or a watch
// error, see podindex.Snapshot.OnNode) is given the benefit of the doubt.
func (s *scopeTable) compute(sc *scope) {
	nsInfo, nsOK := s.ns.Lookup(sc.key.ns)
	podInfo, podOK, verdict := s.podState(sc.key)
	sc.nsVer, sc.nsFound, sc.podVer, sc.podFound, sc.verdict = nsInfo.Version, nsOK, podInfo.Version, podOK, verdict
	sc.changed = s.iter
	switch {
	case verdict == podindex.No && s.cfg.Check == NodeCheckDrop:
		sc.state = enrichDropped
	case verdict == podindex.No:
		sc.state = enrichNotOnNode
	case nsOK:
		sc.state = enrichHit
	default:
		sc.state = enrichUnknown
	}
}

// labels returns the labels a series of sc gets, valid until the next call.
// They are merged again for every series built rather than kept per scope:
// building happens for new and changed series only, and a few hundred bytes
// per pod and target add up with 30,000 pods. The current snapshots have the
// inputs sc was computed from (refresh runs at every change of either).
func (s *scopeTable) labels(sc *scope) []enrich.Label {
	if sc.state != enrichHit && sc.state != enrichUnknown {
		return nil
	}
	nsInfo, _ := s.ns.Lookup(sc.key.ns)
	var podInfo podindex.PodInfo
	if s.pods != nil && sc.key.pod != "" {
		podInfo, _ = s.pods.Lookup(sc.key.ns, sc.key.pod)
	}
	s.podBuf = podInfo.AppendLabels(s.podBuf[:0])
	first, second := nsInfo.Labels, s.podBuf
	if s.cfg.Precedence == PodFirst {
		first, second = second, first
	}
	s.merge = mergeLabels(s.merge[:0], first, second)
	return s.merge
}

// maxChangedAge bounds the age of scope.changed, in scrapes: far above
// the age of any live entry's seen (eviction removes entries absent for
// more than 2 × evictAfter scrapes), far below the counter's wrap.
const maxChangedAge = 4 * sweepEvery

// changedSince reports whether sc changed after the scrape seen (a series'
// seriesEntry.seen), as of scrape iter: whether the series must be
// rebuilt. Ages, not scrape numbers, are compared: both wrap at 2^16.
func (sc *scope) changedSince(seen, iter uint16) bool {
	return iter-sc.changed < iter-seen
}

// name is namespace/pod of scope i, for logs.
func (s *scopeTable) name(i uint32) string {
	k := s.list[i].key
	if k.pod == "" {
		return k.ns
	}
	return k.ns + "/" + k.pod
}

// mergeLabels appends first and second (each sorted, names unique) to dst
// as one sorted set: on a shared name first keeps it and second's label
// becomes NAME_conflictN, the smallest N no label of either set has.
func mergeLabels(dst, first, second []enrich.Label) []enrich.Label {
	out := append(dst, first...)
	has := func(name string) bool {
		for _, l := range out {
			if l.Name == name {
				return true
			}
		}
		for _, l := range second {
			if l.Name == name {
				return true
			}
		}
		return false
	}
	for _, l := range second {
		if !hasName(first, l.Name) {
			out = append(out, l)
			continue
		}
		for n := 1; ; n++ {
			if name := l.Name + "_conflict" + strconv.Itoa(n); !has(name) {
				out = append(out, enrich.Label{Name: name, Value: l.Value})
				break
			}
		}
	}
	enrich.SortLabels(out)
	return out
}

func hasName(ls []enrich.Label, name string) bool {
	for _, l := range ls {
		if l.Name == name {
			return true
		}
	}
	return false
}

// notOnNode counts a sample of a series the check found on the wrong node.
func (c *TargetCache) notOnNode(res *Result, e *seriesEntry) {
	if res.NotOnNode++; res.NotOnNode == 1 {
		res.FirstNotOnNode = c.scopes.name(e.ns)
	}
}
