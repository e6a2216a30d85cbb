// This file is over 500 lines because the sources' handlers and the snapshot they publish
// share one lock and one set of invariants (owner chains, grace periods): read together, the
// locking can be checked in one place.

package podindex

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/kubeclient"
)

var (
	replicaSetsResource = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	jobsResource        = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}
)

type ownerKey struct{ kind, namespace, name string }

// ownerRec is what the index knows of one ReplicaSet or Job, and which pods
// follow it (so that a change re-resolves just those pods).
type ownerRec struct {
	known bool
	owner ownerRef
	pods  followers // pod names in the owner's namespace
}

// followers is a set of pod names: a slice while small (most owners have a
// few pods, and a map costs ~200 bytes even for one), a map once large, so
// that removing the pods of a 10,000-pod Job stays linear.
type followers struct {
	few  []string
	many map[string]struct{}
}

const maxFewFollowers = 32

func (f *followers) len() int { return len(f.few) + len(f.many) }

func (f *followers) add(name string) {
	if f.many != nil {
		f.many[name] = struct{}{}
		return
	}
	if slices.Contains(f.few, name) {
		return
	}
	if len(f.few) < maxFewFollowers {
		f.few = append(f.few, name)
		return
	}
	f.many = make(map[string]struct{}, 2*maxFewFollowers)
	for _, n := range f.few {
		f.many[n] = struct{}{}
	}
	f.many[name] = struct{}{}
	f.few = nil
}

func (f *followers) remove(name string) {
	if f.many != nil {
		delete(f.many, name)
		if len(f.many) == 0 {
			f.many = nil
		}
		return
	}
	if i := slices.Index(f.few, name); i >= 0 {
		last := len(f.few) - 1
		f.few[i] = f.few[last]
		f.few[last] = ""
		f.few = f.few[:last]
		if last == 0 {
			f.few = nil
		}
	}
}

// names returns the followers (a copy when they are a map).
func (f *followers) names() []string {
	if f.many == nil {
		return f.few
	}
	return slices.Collect(maps.Keys(f.many))
}

type tombstone struct {
	key podKey
	at  int64
	seq uint64 // identifies the tombstone: times can repeat
}

// Index keeps the pod snapshot up to date from a Pod source and
// ReplicaSet and Job metadata sources (source.go). Snapshot is cheap and safe from any
// goroutine; a new snapshot is built lazily, at most once per change burst,
// by the first reader after a change, copying only the shards that changed.
type Index struct {
	cfg    Options
	mapper labelMapper
	logger *slog.Logger
	health *health

	mu         sync.Mutex
	owners     map[ownerKey]*ownerRec
	conflicts  map[podKey]string // the label clashes last reported, for pods that have some
	shards     [numShards]shard
	dirty      [numShards]bool
	gen        uint64
	tombstones []tombstone // in deletion order; stale items are skipped
	nTombs     int
	tombSeq    uint64
	nLive      int
	nUnres     int
	anyDirty   atomic.Bool
	snapshot   atomic.Pointer[Snapshot]

	sources []source // see source.go
	metrics metrics
}

type metrics struct {
	pods, tombstones             prometheus.Gauge
	resolved, unresolved         prometheus.Gauge
	rebuilds, changes, conflicts prometheus.Counter
	evicted, watchErrors         prometheus.Counter
	synced                       syncedGauges
}

func newMetrics(reg prometheus.Registerer) metrics {
	owners := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kubelet_meta_proxy_pod_owners",
		Help: "Live pods in the index by whether their workload resolved (unresolved: the ReplicaSet or Job they name is unknown, no workload label is added).",
	}, []string{"state"})
	m := metrics{
		pods: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubelet_meta_proxy_pods",
			Help: "Live pods in the pod index.",
		}),
		tombstones: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubelet_meta_proxy_pod_tombstones",
			Help: "Deleted pods the pod index keeps for the deleted grace period.",
		}),
		resolved:   owners.WithLabelValues("resolved"),
		unresolved: owners.WithLabelValues("unresolved"),
		rebuilds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelet_meta_proxy_pod_snapshot_rebuilds_total",
			Help: "Pod index snapshots built (at most one per change burst).",
		}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelet_meta_proxy_pod_label_changes_total",
			Help: "Changes to the labels the pod index adds for a pod (relabels, new owners, creations).",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelet_meta_proxy_pod_label_conflicts_total",
			Help: "Pod label keys that mapped to a label name already taken; they were renamed NAME_conflictN.",
		}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelet_meta_proxy_pod_tombstones_evicted_total",
			Help: "Tombstones forgotten before their grace ended because the tombstone limit was reached.",
		}),
		watchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelet_meta_proxy_pod_index_watch_errors_total",
			Help: "List or watch errors of the pod index's informers (each restarts the unknown grace).",
		}),
		synced: newSyncedGauges("pods", "replicasets", "jobs"),
	}
	if reg != nil {
		reg.MustRegister(m.pods, m.tombstones, owners, m.rebuilds, m.changes, m.conflicts, m.evicted, m.watchErrors)
		for _, g := range m.synced {
			reg.MustRegister(g)
		}
	}
	return m
}

// New returns an index fed by a Pod list/watch on client (restricted to
// cfg's node, if any) and, when workloads are on, ReplicaSet and Job
// metadata list/watches on meta. Run starts them.
func New(cfg Config, client kubeclient.Interface, meta metadata.Interface) *Index {
	ix := newIndex(cfg)
	ix.addSource("pods", podListWatch(client, ix.cfg.Node), &v1.Pod{}, knownPods{ix}, ix.stripPod, ix.upsertPod, ix.deletePod)
	if ix.cfg.Workload {
		for _, r := range []struct {
			gvr  schema.GroupVersionResource
			kind string
		}{{replicaSetsResource, kindReplicaSet}, {jobsResource, kindJob}} {
			kind := r.kind
			ix.addSource(r.gvr.Resource, metaListWatch(meta, meta.Resource(r.gvr)), &metav1.PartialObjectMetadata{}, knownOwners{ix, kind}, stripOwner,
				func(obj any) { ix.upsertOwner(kind, obj) }, func(obj any) { ix.deleteOwner(kind, obj) })
		}
	}
	return ix
}

// watchFailed notes a list or watch error: events may be lost until the
// relist, so unknown pods get the unknown grace again.
func (ix *Index) watchFailed(resource string, err error) {
	ix.health.blindSince.Store(ix.cfg.Now().UnixNano())
	ix.metrics.watchErrors.Inc()
	ix.logger.Warn("pod index: list/watch failed; unknown pods are Unknown, not No, for the unknown grace", "resource", resource, "err", err)
}

func newIndex(cfg Config) *Index {
	ix := &Index{
		cfg:       cfg.o,
		mapper:    labelMapper{keys: cfg.o.Labels, workload: cfg.o.Workload},
		logger:    cfg.o.Logger,
		health:    &health{},
		owners:    map[ownerKey]*ownerRec{},
		conflicts: map[podKey]string{},
	}
	ix.metrics = newMetrics(cfg.o.Registerer)
	ix.snapshot.Store(ix.build())
	return ix
}

// Run runs the sources, and drops expired tombstones, until ctx is done.
func (ix *Index) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range ix.sources {
		wg.Add(1)
		go func() { defer wg.Done(); s.ctl.RunWithContext(ctx) }()
	}
	// Sweep often enough that a tombstone outlives its grace by at most a
	// tenth of it.
	every := min(max(ix.cfg.DeletedGrace/10, time.Second), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
			ix.Sweep(ix.cfg.Now())
		}
	}
}

// WaitForSync blocks until every source has listed its objects, or ctx
// ends. The unknown grace starts when it returns true.
func (ix *Index) WaitForSync(ctx context.Context) bool {
	synced := make([]cache.InformerSynced, len(ix.sources))
	for i, s := range ix.sources {
		synced[i] = s.ctl.HasSynced // true once the initial list was processed
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return false
	}
	ix.markSynced()
	ix.metrics.synced.WithLabelValues("pods").Set(1)
	if ix.cfg.Workload {
		ix.metrics.synced.WithLabelValues("replicasets").Set(1)
		ix.metrics.synced.WithLabelValues("jobs").Set(1)
	}
	return true
}

func (ix *Index) markSynced() {
	if !ix.health.synced.Load() {
		ix.health.blindSince.Store(ix.cfg.Now().UnixNano())
		ix.health.synced.Store(true)
	}
}

// Synced reports whether the initial lists have completed.
func (ix *Index) Synced() bool { return ix.health.synced.Load() }

// Snapshot returns the current immutable view.
func (ix *Index) Snapshot() *Snapshot {
	if !ix.anyDirty.Load() {
		return ix.snapshot.Load()
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.anyDirty.Load() {
		ix.snapshot.Store(ix.build())
		ix.anyDirty.Store(false)
		ix.metrics.rebuilds.Inc()
	}
	return ix.snapshot.Load()
}

// OnNode is Snapshot().OnNode.
func (ix *Index) OnNode(namespace, pod, node string, now time.Time) Verdict {
	return ix.Snapshot().OnNode(namespace, pod, node, now)
}

// build makes a snapshot of the shards: the dirty ones were copied by put,
// the others are the previous snapshot's. Callers hold mu (or own ix
// exclusively).
func (ix *Index) build() *Snapshot {
	s := &Snapshot{
		generation: ix.gen,
		node:       ix.cfg.Node,
		graces:     graces{deleted: ix.cfg.DeletedGrace, unknown: ix.cfg.UnknownGrace},
		health:     ix.health,
	}
	// The snapshot takes the shards as they are; put clones a shard before
	// its first change after this, so a pod is in one map, not two, while
	// nothing changes.
	s.shards = ix.shards
	ix.dirty = [numShards]bool{}
	return s
}

// stripPod is the pod source's transform. A pod whose kept fields did not
// change (most updates are status updates) is replaced by the object already
// in the index, so that the handler sees no change and nothing is copied.
// Label clashes are reported here, once per change of a pod's clashes.
func (ix *Index) stripPod(obj any) (any, error) {
	obj, conflicts := ix.mapper.stripPod(obj)
	if p, ok := obj.(*pod); ok {
		key := podKey{p.namespace, p.name}
		ix.mu.Lock()
		if e := ix.get(key); e != nil && e.live && e.pod.same(p) {
			obj = e.pod
		} else {
			ix.reportConflicts(key, conflicts)
		}
		ix.mu.Unlock()
	}
	return obj, nil
}

func (ix *Index) get(key podKey) *entry {
	h := podHash(key.namespace, key.name)
	return ix.shards[shardOf(h)].find(h, key.namespace, key.name)
}

// put sets the entry of key (whose pod is key) to e, or removes it (nil).
func (ix *Index) put(key podKey, e *entry) {
	h := podHash(key.namespace, key.name)
	i := shardOf(h)
	if !ix.dirty[i] { // shared with the published snapshot: copy on write
		ix.shards[i] = ix.shards[i].clone()
		ix.dirty[i] = true
	}
	if e == nil {
		ix.shards[i].remove(h, key.namespace, key.name)
	} else {
		ix.shards[i].set(h, e)
	}
	ix.dirty[i] = true
	ix.anyDirty.Store(true)
}

func (ix *Index) upsertPod(obj any) {
	p, ok := obj.(*pod)
	if !ok {
		return
	}
	if ix.cfg.Node != "" && p.nodeName != ix.cfg.Node {
		// The field selector keeps other nodes' pods away; should one come
		// anyway, it is not this node's.
		ix.deletePod(obj)
		return
	}
	key := podKey{p.namespace, p.name}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old := ix.get(key)
	if old != nil && old.live {
		if old.pod == p {
			return
		}
		if old.pod.owner != p.owner {
			ix.unfollow(key, old.pod.owner)
			ix.follow(key, p.owner)
		}
	} else {
		ix.follow(key, p.owner)
	}
	ix.publish(key, old, p, true, nil)
}

func (ix *Index) deletePod(obj any) {
	var key podKey
	switch o := obj.(type) {
	case *pod:
		key = podKey{o.namespace, o.name}
	case cache.DeletedFinalStateUnknown:
		ns, name, err := cache.SplitMetaNamespaceKey(o.Key)
		if err != nil {
			return
		}
		key = podKey{ns, name}
	default:
		return
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old := ix.get(key)
	if old == nil || !old.live {
		return
	}
	ix.unfollow(key, old.pod.owner)
	ix.tombSeq++
	gone := tombstone{key: key, at: ix.cfg.Now().UnixNano(), seq: ix.tombSeq}
	delete(ix.conflicts, key)
	// The tombstone needs the node and the labels it adds (still added
	// within the grace), not the owner.
	slim := &pod{namespace: old.pod.namespace, name: old.pod.name, nodeName: old.pod.nodeName, labels: old.pod.labels}
	ix.publish(key, old, slim, false, &gone)
	ix.tombstones = append(ix.tombstones, gone)
	ix.evictOverLimit()
	ix.compactQueue()
}

// compactQueue drops queue items whose tombstone was replaced (a name
// deleted, re-created and deleted again) once they outnumber the live ones,
// so the queue stays within twice the tombstone count, amortized O(1).
func (ix *Index) compactQueue() {
	if len(ix.tombstones) <= 2*ix.nTombs+64 {
		return
	}
	kept := ix.tombstones[:0]
	for _, t := range ix.tombstones {
		if e := ix.get(t.key); e != nil && e.gone != nil && e.gone.seq == t.seq {
			kept = append(kept, t)
		}
	}
	clear(ix.tombstones[len(kept):])
	ix.tombstones = kept
	if cap(kept) > 64 && len(kept) < cap(kept)/4 {
		ix.tombstones = append([]tombstone(nil), kept...)
	}
}

// publish replaces old (nil for a new name) by an entry for p. live says
// whether the pod exists; gone, when set, records the live incarnation's
// deletion. Labels are recomputed for a live pod; Version changes only if
// they differ.
func (ix *Index) publish(key podKey, old *entry, p *pod, live bool, gone *tombstone) {
	e := &entry{pod: p, live: live}
	if old != nil {
		e.workload, e.workloadType, e.version = old.workload, old.workloadType, old.version
		e.gone = old.gone
	}
	if gone != nil {
		e.gone = &goneRec{node: old.pod.nodeName, at: gone.at, seq: gone.seq}
	}
	if live {
		w, wt, resolved := "", "", true
		if ix.cfg.Workload {
			w, wt, resolved = resolveWorkload(key.namespace, key.name, p.owner, ix.lookupOwner)
		}
		if !resolved || !ix.cfg.Workload {
			w, wt = "", ""
		}
		if old == nil || !slices.Equal(old.pod.labels, p.labels) || old.workload != w || old.workloadType != wt {
			ix.gen++
			e.version = ix.gen
			ix.metrics.changes.Inc()
		}
		e.workload, e.workloadType = w, wt
		e.unresolved = !resolved
	}
	ix.count(old, e)
	ix.put(key, e)
}

// count keeps the live and tombstone counts and their gauges.
func (ix *Index) count(old, e *entry) {
	if old != nil {
		if old.live {
			ix.nLive--
		}
		if old.unresolved {
			ix.nUnres--
		}
		if old.gone != nil {
			ix.nTombs--
		}
	}
	if e != nil {
		if e.live {
			ix.nLive++
		}
		if e.unresolved {
			ix.nUnres++
		}
		if e.gone != nil {
			ix.nTombs++
		}
	}
	ix.metrics.pods.Set(float64(ix.nLive))
	ix.metrics.tombstones.Set(float64(ix.nTombs))
	ix.metrics.unresolved.Set(float64(ix.nUnres))
	ix.metrics.resolved.Set(float64(ix.nLive - ix.nUnres))
}

// reportConflicts logs and counts a pod's label clashes when they differ
// from the last ones reported for it (kept only for pods with clashes).
func (ix *Index) reportConflicts(key podKey, cs []Conflict) {
	k := conflictKey(cs)
	if k == ix.conflicts[key] {
		return
	}
	if k == "" {
		delete(ix.conflicts, key)
		return
	}
	ix.conflicts[key] = k
	for _, c := range cs {
		ix.metrics.conflicts.Add(float64(len(c.Keys)))
		ix.logger.Warn("pod label keys map to a label name already taken; they get _conflictN",
			"namespace", key.namespace, "pod", key.name, "label", c.Name, "keys", c.Keys)
	}
}

// Sweep forgets tombstones older than the deleted grace at now. Run calls it
// periodically.
func (ix *Index) Sweep(now time.Time) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	limit := now.UnixNano() - int64(ix.cfg.DeletedGrace)
	n := 0
	for n < len(ix.tombstones) && ix.tombstones[n].at < limit {
		ix.forget(ix.tombstones[n])
		n++
	}
	ix.dropQueued(n)
}

func (ix *Index) evictOverLimit() {
	n := 0
	for ix.nTombs > ix.cfg.MaxTombstones && n < len(ix.tombstones) {
		if ix.forget(ix.tombstones[n]) {
			ix.metrics.evicted.Inc()
		}
		n++
	}
	ix.dropQueued(n)
}

func (ix *Index) dropQueued(n int) {
	if n == 0 {
		return
	}
	ix.tombstones = ix.tombstones[n:]
	// Reallocate once the dead prefix dominates, so the queue's array does
	// not keep growing.
	if cap(ix.tombstones) > 64 && len(ix.tombstones) < cap(ix.tombstones)/4 {
		ix.tombstones = append([]tombstone(nil), ix.tombstones...)
	}
}

// forget drops tombstone t if it is still the pod name's latest one.
func (ix *Index) forget(t tombstone) bool {
	old := ix.get(t.key)
	if old == nil || old.gone == nil || old.gone.seq != t.seq {
		return false
	}
	var e *entry
	if old.live {
		c := *old
		c.gone = nil
		e = &c
	}
	ix.count(old, e)
	ix.put(t.key, e)
	ix.gen++
	return true
}

// follow and unfollow keep the owner -> pods index for pods whose workload
// goes through a ReplicaSet or Job.
func (ix *Index) follow(key podKey, o ownerRef) {
	if !ix.cfg.Workload || (o.kind != kindReplicaSet && o.kind != kindJob) {
		return
	}
	ok := ownerKey{o.kind, key.namespace, o.name}
	r := ix.owners[ok]
	if r == nil {
		r = &ownerRec{}
		ix.owners[ok] = r
	}
	r.pods.add(key.name)
}

func (ix *Index) unfollow(key podKey, o ownerRef) {
	if !ix.cfg.Workload || (o.kind != kindReplicaSet && o.kind != kindJob) {
		return
	}
	ok := ownerKey{o.kind, key.namespace, o.name}
	r := ix.owners[ok]
	if r == nil {
		return
	}
	r.pods.remove(key.name)
	if r.pods.len() == 0 {
		if !r.known {
			delete(ix.owners, ok)
		}
	}
}

func (ix *Index) lookupOwner(kind, namespace, name string) (ownerRef, bool) {
	r := ix.owners[ownerKey{kind, namespace, name}]
	if r == nil || !r.known {
		return ownerRef{}, false
	}
	return r.owner, true
}

func (ix *Index) upsertOwner(kind string, obj any) {
	m, ok := obj.(*owner)
	if !ok {
		return
	}
	own := m.ref
	ix.mu.Lock()
	defer ix.mu.Unlock()
	k := ownerKey{kind, m.namespace, m.name}
	r := ix.owners[k]
	if r == nil {
		r = &ownerRec{}
		ix.owners[k] = r
	}
	if r.known && r.owner == own {
		return
	}
	r.known, r.owner = true, own
	ix.refollowers(k, r)
}

func (ix *Index) deleteOwner(kind string, obj any) {
	var ns, name string
	switch o := obj.(type) {
	case *owner:
		ns, name = o.namespace, o.name
	case cache.DeletedFinalStateUnknown:
		var err error
		if ns, name, err = cache.SplitMetaNamespaceKey(o.Key); err != nil {
			return
		}
	default:
		return
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	k := ownerKey{kind, ns, name}
	r := ix.owners[k]
	if r == nil || !r.known {
		return
	}
	r.known, r.owner = false, ownerRef{}
	if r.pods.len() == 0 {
		delete(ix.owners, k)
		return
	}
	ix.refollowers(k, r)
}

// refollowers re-resolves the live pods that follow owner k.
func (ix *Index) refollowers(k ownerKey, r *ownerRec) {
	for _, name := range r.pods.names() {
		key := podKey{k.namespace, name}
		if e := ix.get(key); e != nil && e.live {
			ix.publish(key, e, e.pod, true, nil)
		}
	}
}

// syncedGauges are kubelet_meta_proxy_informer_synced{resource=...}, the family
// nsindex and the node informer export too (each with a constant resource
// label, which a registry cannot mix with a GaugeVec's variable one), so that
// the mixin's cache alert covers the pod index's informers as well.
type syncedGauges map[string]prometheus.Gauge

func newSyncedGauges(resources ...string) syncedGauges {
	g := syncedGauges{}
	for _, r := range resources {
		g[r] = prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "kubelet_meta_proxy_informer_synced",
			Help:        "1 once the informer's cache of the resource has synced.",
			ConstLabels: prometheus.Labels{"resource": r},
		})
	}
	return g
}

// WithLabelValues returns the gauge of resource.
func (g syncedGauges) WithLabelValues(resource string) prometheus.Gauge { return g[resource] }
