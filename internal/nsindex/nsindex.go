// Package nsindex watches Namespace objects (metadata only) and publishes an
// immutable snapshot, namespace -> labels to add, for the enrichment path.
package nsindex

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/kubeclient"
)

var namespacesResource = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// Index keeps the namespace snapshot up to date from an informer. Snapshot is
// cheap and safe from any goroutine; a new snapshot is built lazily, at most
// once per change burst, by the first reader after a change.
type Index struct {
	mapper enrich.NamespaceMapper
	logger *slog.Logger

	mu       sync.Mutex
	current  map[string]enrich.NamespaceInfo // the mutable state behind the snapshots
	gen      uint64
	dirty    atomic.Bool
	snapshot atomic.Pointer[enrich.NamespaceIndex]
	reported map[string]string // conflicts already logged, by namespace

	synced    atomic.Bool
	informer  cache.SharedIndexInformer
	namespace prometheus.Gauge
	changes   prometheus.Counter
	conflicts prometheus.Counter
	syncedG   prometheus.Gauge
}

// New returns an index fed by a metadata informer on namespaces.
func New(client metadata.Interface, mapper enrich.NamespaceMapper, resync time.Duration, logger *slog.Logger, reg prometheus.Registerer) *Index {
	ix := newIndex(mapper, logger, reg)
	// Not metadatainformer: it imports k8s.io/client-go/informers, and with
	// it every API group (internal/kubeclient).
	lw := kubeclient.ListWatch(client, client.Resource(namespacesResource), nil)
	ix.informer = cache.NewSharedIndexInformer(lw, &metav1.PartialObjectMetadata{}, resync, cache.Indexers{})
	_, _ = ix.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { ix.upsert(obj) },
		UpdateFunc: func(_, obj any) { ix.upsert(obj) },
		DeleteFunc: func(obj any) { ix.remove(obj) },
	})
	return ix
}

// NewStatic returns an index without an informer, fed by Set and Delete
// (scrape-once lists namespaces once).
func NewStatic(mapper enrich.NamespaceMapper, logger *slog.Logger) *Index {
	ix := newIndex(mapper, logger, nil)
	ix.synced.Store(true)
	return ix
}

func newIndex(mapper enrich.NamespaceMapper, logger *slog.Logger, reg prometheus.Registerer) *Index {
	ix := &Index{
		mapper:   mapper,
		logger:   logger,
		current:  map[string]enrich.NamespaceInfo{},
		reported: map[string]string{},
		namespace: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubelet_meta_proxy_namespaces",
			Help: "Namespaces in the enrichment index.",
		}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelet_meta_proxy_namespace_label_changes_total",
			Help: "Changes to the labels the index adds for a namespace (relabels, creations, deletions).",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelet_meta_proxy_namespace_label_conflicts_total",
			Help: "Kubernetes keys that sanitized to a label name another key already had; they were renamed NAME_conflictN.",
		}),
		syncedG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "kubelet_meta_proxy_informer_synced",
			Help:        "1 once the informer's cache of the resource has synced.",
			ConstLabels: prometheus.Labels{"resource": "namespaces"},
		}),
	}
	if reg != nil {
		reg.MustRegister(ix.namespace, ix.changes, ix.conflicts, ix.syncedG)
	}
	ix.snapshot.Store(enrich.NewNamespaceIndex(0, nil))
	return ix
}

// Run runs the informer until ctx is done.
func (ix *Index) Run(ctx context.Context) {
	ix.informer.Run(ctx.Done())
}

// WaitForSync blocks until the informer has listed every namespace, or ctx ends.
func (ix *Index) WaitForSync(ctx context.Context) bool {
	if !cache.WaitForCacheSync(ctx.Done(), ix.informer.HasSynced) {
		return false
	}
	ix.synced.Store(true)
	ix.syncedG.Set(1)
	return true
}

// Synced reports whether the initial list has completed.
func (ix *Index) Synced() bool { return ix.synced.Load() }

// Snapshot returns the current immutable view.
func (ix *Index) Snapshot() *enrich.NamespaceIndex {
	if !ix.dirty.Load() {
		return ix.snapshot.Load()
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.dirty.Load() {
		m := make(map[string]enrich.NamespaceInfo, len(ix.current))
		for k, v := range ix.current {
			m[k] = v
		}
		ix.snapshot.Store(enrich.NewNamespaceIndex(ix.gen, m))
		ix.dirty.Store(false)
	}
	return ix.snapshot.Load()
}

func (ix *Index) upsert(obj any) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	ix.Set(m.Name, m.Labels, m.Annotations)
}

func (ix *Index) remove(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	ix.Delete(m.Name)
}

// Set records a namespace's labels and annotations (what the informer saw).
func (ix *Index) Set(name string, labels, annotations map[string]string) {
	add, conflicts := ix.mapper.Map(labels, annotations)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old, existed := ix.current[name]
	if existed && slices.Equal(old.Labels, add) {
		return
	}
	ix.gen++
	ix.current[name] = enrich.NamespaceInfo{Labels: add, Version: ix.gen}
	ix.dirty.Store(true)
	ix.changes.Inc()
	ix.namespace.Set(float64(len(ix.current)))
	if len(conflicts) > 0 {
		key := conflictKey(conflicts)
		if ix.reported[name] != key {
			ix.reported[name] = key
			ix.conflicts.Add(float64(len(conflicts)))
			for _, c := range conflicts {
				ix.logger.Warn("namespace keys sanitize to the same label name; the first keeps it, the others get _conflictN",
					"namespace", name, "label", c.Name, "keys", c.Keys)
			}
		}
	}
}

// Delete forgets a namespace.
func (ix *Index) Delete(name string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if _, ok := ix.current[name]; !ok {
		return
	}
	ix.gen++
	delete(ix.current, name)
	delete(ix.reported, name)
	ix.dirty.Store(true)
	ix.changes.Inc()
	ix.namespace.Set(float64(len(ix.current)))
}

func conflictKey(cs []enrich.Conflict) string {
	k := ""
	for _, c := range cs {
		k += c.Name + "="
		for _, key := range c.Keys {
			k += key + ","
		}
		k += ";"
	}
	return k
}
