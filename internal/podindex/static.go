package podindex

import (
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NewStatic returns an index without sources, fed by SetPod, DeletePod
// and SetOwner through the same transform and handlers the sources use.
// It counts as synced at once (scrape-once lists objects once; tests feed
// it directly).
func NewStatic(cfg Config) *Index {
	ix := newIndex(cfg)
	ix.markSynced()
	return ix
}

// SetPod records a pod as a source would have seen it.
func (ix *Index) SetPod(p *v1.Pod) {
	obj, _ := ix.stripPod(p)
	ix.upsertPod(obj)
}

// DeletePod records the deletion of namespace/name; the deleted grace
// starts now (the index's clock).
func (ix *Index) DeletePod(namespace, name string) {
	ix.deletePod(&pod{namespace: namespace, name: name})
}

// SetOwner records a ReplicaSet or Job ("ReplicaSet", "Job") and its owner
// references.
func (ix *Index) SetOwner(kind string, m *metav1.PartialObjectMetadata) {
	obj, _ := stripOwner(m)
	ix.upsertOwner(kind, obj)
}
