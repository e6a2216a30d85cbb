package podindex

import (
	"context"
	"sort"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/kubeclient"
)

// source feeds one resource into the index as an informer would (a
// reflector with the watch error handler, the transform, handlers), but
// without an informer's store, indexer, queue and event distribution: a
// directQueue hands each change to the index at once, and the index is the
// only place an object is kept, stripped. An informer kept a second map of
// every object with a "namespace/name" key each, grew a notification buffer
// to the size of the initial list, and its DeltaFIFO's map kept that size
// once drained (Go maps do not shrink): about 8 MB of 25 for 30,000 pods
// (TestPodIndexMemory in e2e/loadbench).
type source struct {
	resource string
	ctl      cache.Controller
}

func (ix *Index) addSource(resource string, lw cache.ListerWatcher, objType runtime.Object, known cache.KeyLister,
	transform cache.TransformFunc, upsert, remove func(any)) {
	q := &directQueue{name: "podindex-" + resource, known: known, transform: transform, upsert: upsert, remove: remove,
		syncedCh: make(chan struct{}), closed: make(chan struct{})}
	ctl := cache.New(&cache.Config{
		Queue: q, ListerWatcher: lw, ObjectType: objType, FullResyncPeriod: ix.cfg.Resync,
		Process: func(any, bool) error { return nil }, // directQueue.Pop never returns an item
		WatchErrorHandlerWithContext: func(ctx context.Context, r *cache.Reflector, err error) {
			ix.watchFailed(resource, err)
			cache.DefaultWatchErrorHandler(ctx, r, err)
		},
	})
	ix.metrics.synced.WithLabelValues(resource).Set(0)
	ix.sources = append(ix.sources, source{resource: resource, ctl: ctl})
}

// directQueue is a cache.Queue that queues nothing: the reflector's calls
// (one goroutine) are applied to the index as they come, through the
// transform; a relist (Replace) deletes what the index knows and the list
// lacks, as a DeltaFIFO with KnownObjects does. It has synced once the first
// list has been applied.
type directQueue struct {
	name           string
	known          cache.KeyLister
	transform      cache.TransformFunc
	upsert, remove func(any)

	syncOnce, closeOnce sync.Once
	syncedCh, closed    chan struct{}
}

var _ cache.Queue = (*directQueue)(nil)

func (q *directQueue) apply(obj any, f func(any)) error {
	obj, err := q.transform(obj)
	if err != nil {
		return err
	}
	f(obj)
	return nil
}

func (q *directQueue) Add(obj any) error    { return q.apply(obj, q.upsert) }
func (q *directQueue) Update(obj any) error { return q.apply(obj, q.upsert) }
func (q *directQueue) Delete(obj any) error { return q.apply(obj, q.remove) }
func (q *directQueue) Resync() error        { return nil }

func (q *directQueue) Replace(list []any, _ string) error {
	seen := make(map[string]struct{}, len(list))
	for _, obj := range list {
		obj, err := q.transform(obj)
		if err != nil {
			return err
		}
		key, err := cache.MetaNamespaceKeyFunc(obj)
		if err != nil {
			return err
		}
		seen[key] = struct{}{}
		q.upsert(obj)
	}
	for _, key := range q.known.ListKeys() {
		if _, ok := seen[key]; !ok {
			q.remove(cache.DeletedFinalStateUnknown{Key: key})
		}
	}
	q.syncOnce.Do(func() { close(q.syncedCh) })
	return nil
}

func (q *directQueue) Pop(cache.PopProcessFunc) (any, error) {
	<-q.closed
	return nil, cache.ErrFIFOClosed
}

func (q *directQueue) HasSynced() bool {
	select {
	case <-q.syncedCh:
		return true
	default:
		return false
	}
}

func (q *directQueue) HasSyncedChecker() cache.DoneChecker { return q }
func (q *directQueue) Name() string                        { return q.name }
func (q *directQueue) Done() <-chan struct{}               { return q.syncedCh }
func (q *directQueue) Close()                              { q.closeOnce.Do(func() { close(q.closed) }) }

func podListWatch(client kubeclient.Interface, node string) cache.ListerWatcher {
	var tweak func(*metav1.ListOptions)
	if node != "" {
		sel := fields.OneTermEqualSelector("spec.nodeName", node).String()
		tweak = func(o *metav1.ListOptions) { o.FieldSelector = sel }
	}
	return kubeclient.ListWatch(client, client.Pods(metav1.NamespaceAll), tweak)
}

func metaListWatch(meta metadata.Interface, r metadata.ResourceInterface) cache.ListerWatcher {
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return r.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return r.Watch(ctx, o)
		},
	}, meta)
}

// knownPods lists the live pods of the index for directQueue.Replace.
type knownPods struct{ ix *Index }

func (k knownPods) ListKeys() []string {
	ix := k.ix
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var keys []string
	for i := range ix.shards {
		ix.shards[i].all(func(e *entry) {
			if e.live {
				keys = append(keys, e.pod.namespace+"/"+e.pod.name)
			}
		})
	}
	sort.Strings(keys)
	return keys
}

// knownOwners lists the known ReplicaSets or Jobs for directQueue.Replace.
type knownOwners struct {
	ix   *Index
	kind string
}

func (k knownOwners) ListKeys() []string {
	ix := k.ix
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var keys []string
	for key, r := range ix.owners {
		if key.kind == k.kind && r.known {
			keys = append(keys, key.namespace+"/"+key.name)
		}
	}
	sort.Strings(keys)
	return keys
}
