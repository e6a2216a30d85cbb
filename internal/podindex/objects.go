package podindex

import (
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
)

// pod is what the index keeps of a Pod: the transform builds it before
// anything keeps the object, so a full v1.Pod (1,240 bytes of struct alone,
// plus spec, status and managed fields) never stays in memory. It implements
// metav1.Object itself (cache's key functions need namespace and name)
// rather than embedding a 232-byte ObjectMeta: 112 bytes instead of 320 per
// pod. The fields it does not keep read as empty and ignore writes. The UID
// is not kept (48 bytes more a pod): pods are matched by namespace and name.
type pod struct {
	namespace, name string
	nodeName        string
	owner           ownerRef
	// labels are the pod labels the index adds (mapLabels: allowlisted,
	// non-empty, names sanitized and clash-free, sorted by name), computed
	// once here rather than kept as keys and mapped again per snapshot.
	labels []enrich.Label
}

var (
	_ runtime.Object = (*pod)(nil)
	_ metav1.Object  = (*pod)(nil)
)

func (p *pod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (p *pod) DeepCopyObject() runtime.Object {
	c := *p
	c.labels = slices.Clone(p.labels)
	return &c
}

func (p *pod) GetNamespace() string                          { return p.namespace }
func (p *pod) SetNamespace(ns string)                        { p.namespace = ns }
func (p *pod) GetName() string                               { return p.name }
func (p *pod) SetName(name string)                           { p.name = name }
func (p *pod) GetGenerateName() string                       { return "" }
func (p *pod) SetGenerateName(string)                        {}
func (p *pod) GetUID() types.UID                             { return "" }
func (p *pod) SetUID(types.UID)                              {}
func (p *pod) GetResourceVersion() string                    { return "" }
func (p *pod) SetResourceVersion(string)                     {}
func (p *pod) GetGeneration() int64                          { return 0 }
func (p *pod) SetGeneration(int64)                           {}
func (p *pod) GetSelfLink() string                           { return "" }
func (p *pod) SetSelfLink(string)                            {}
func (p *pod) GetCreationTimestamp() metav1.Time             { return metav1.Time{} }
func (p *pod) SetCreationTimestamp(metav1.Time)              {}
func (p *pod) GetDeletionTimestamp() *metav1.Time            { return nil }
func (p *pod) SetDeletionTimestamp(*metav1.Time)             {}
func (p *pod) GetDeletionGracePeriodSeconds() *int64         { return nil }
func (p *pod) SetDeletionGracePeriodSeconds(*int64)          {}
func (p *pod) GetLabels() map[string]string                  { return nil }
func (p *pod) SetLabels(map[string]string)                   {}
func (p *pod) GetAnnotations() map[string]string             { return nil }
func (p *pod) SetAnnotations(map[string]string)              {}
func (p *pod) GetFinalizers() []string                       { return nil }
func (p *pod) SetFinalizers([]string)                        {}
func (p *pod) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (p *pod) SetOwnerReferences([]metav1.OwnerReference)    {}
func (p *pod) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }
func (p *pod) SetManagedFields([]metav1.ManagedFieldsEntry)  {}

func (p *pod) same(q *pod) bool {
	return p.nodeName == q.nodeName && p.owner == q.owner && slices.Equal(p.labels, q.labels)
}

// selectOwner picks the owner reference the index follows: the controller,
// or the first reference when none is marked controller (kube-state-metrics
// reports every reference whatever owner_is_controller says, and the rule
// does not filter on it).
func selectOwner(refs []metav1.OwnerReference) ownerRef {
	if len(refs) == 0 {
		return ownerRef{}
	}
	r := refs[0]
	for _, c := range refs {
		if c.Controller != nil && *c.Controller {
			r = c
			break
		}
	}
	return ownerRef{kind: intern(r.Kind), name: r.Name}
}

// stripPod is the pod source's transform; it also returns the label
// clashes of a stripped *v1.Pod.
func (m labelMapper) stripPod(obj any) (any, []Conflict) {
	switch o := obj.(type) {
	case *v1.Pod:
		return m.newPod(o)
	case cache.DeletedFinalStateUnknown:
		if p, ok := o.Obj.(*v1.Pod); ok {
			o.Obj, _ = m.newPod(p)
		}
		return o, nil
	default: // already stripped: the transform must be idempotent
		return obj, nil
	}
}

func (m labelMapper) newPod(o *v1.Pod) (*pod, []Conflict) {
	p := &pod{
		namespace: intern(o.Namespace),
		name:      o.Name,
		nodeName:  intern(o.Spec.NodeName),
		owner:     selectOwner(o.OwnerReferences),
	}
	p.owner.name = within(p.owner.name, o.Name)
	if !m.keys.Enabled() {
		return p, nil
	}
	var kvs []kv
	for k, v := range o.Labels {
		if v != "" && m.keep(k) { // an empty value means no label in Prometheus
			kvs = append(kvs, kv{k, within(v, o.Name)})
		}
	}
	slices.SortFunc(kvs, func(a, b kv) int { return strings.Compare(a.key, b.key) })
	var conflicts []Conflict
	p.labels, conflicts = m.mapLabels(kvs)
	return p, conflicts
}

// owner is what the ReplicaSet and Job sources hand the index of an object:
// namespace, name and the one owner reference the index follows, 64 bytes
// instead of a PartialObjectMetadata's ~300 plus its owner references, UID,
// labels and annotations. Like pod, it implements metav1.Object itself.
type owner struct {
	namespace, name string
	ref             ownerRef
}

var (
	_ runtime.Object = (*owner)(nil)
	_ metav1.Object  = (*owner)(nil)
)

func (o *owner) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (o *owner) DeepCopyObject() runtime.Object   { c := *o; return &c }

func (o *owner) GetNamespace() string                          { return o.namespace }
func (o *owner) SetNamespace(ns string)                        { o.namespace = ns }
func (o *owner) GetName() string                               { return o.name }
func (o *owner) SetName(name string)                           { o.name = name }
func (o *owner) GetGenerateName() string                       { return "" }
func (o *owner) SetGenerateName(string)                        {}
func (o *owner) GetUID() types.UID                             { return "" }
func (o *owner) SetUID(types.UID)                              {}
func (o *owner) GetResourceVersion() string                    { return "" }
func (o *owner) SetResourceVersion(string)                     {}
func (o *owner) GetGeneration() int64                          { return 0 }
func (o *owner) SetGeneration(int64)                           {}
func (o *owner) GetSelfLink() string                           { return "" }
func (o *owner) SetSelfLink(string)                            {}
func (o *owner) GetCreationTimestamp() metav1.Time             { return metav1.Time{} }
func (o *owner) SetCreationTimestamp(metav1.Time)              {}
func (o *owner) GetDeletionTimestamp() *metav1.Time            { return nil }
func (o *owner) SetDeletionTimestamp(*metav1.Time)             {}
func (o *owner) GetDeletionGracePeriodSeconds() *int64         { return nil }
func (o *owner) SetDeletionGracePeriodSeconds(*int64)          {}
func (o *owner) GetLabels() map[string]string                  { return nil }
func (o *owner) SetLabels(map[string]string)                   {}
func (o *owner) GetAnnotations() map[string]string             { return nil }
func (o *owner) SetAnnotations(map[string]string)              {}
func (o *owner) GetFinalizers() []string                       { return nil }
func (o *owner) SetFinalizers([]string)                        {}
func (o *owner) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (o *owner) SetOwnerReferences([]metav1.OwnerReference)    {}
func (o *owner) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }
func (o *owner) SetManagedFields([]metav1.ManagedFieldsEntry)  {}

// stripOwner is the ReplicaSet and Job sources' transform: namespace,
// name and the one owner reference followed.
func stripOwner(obj any) (any, error) {
	switch o := obj.(type) {
	case *metav1.PartialObjectMetadata:
		return newOwner(o), nil
	case cache.DeletedFinalStateUnknown:
		if m, ok := o.Obj.(*metav1.PartialObjectMetadata); ok {
			o.Obj = newOwner(m)
		}
		return o, nil
	default: // already stripped
		return obj, nil
	}
}

func newOwner(o *metav1.PartialObjectMetadata) *owner {
	r := &owner{namespace: intern(o.Namespace), name: o.Name, ref: selectOwner(o.OwnerReferences)}
	r.ref.name = within(r.ref.name, o.Name)
	return r
}

// within returns s, sharing the memory of name when name contains it.
// Controllers name what they create after themselves (a ReplicaSet
// DEPLOYMENT-HASH, its pods DEPLOYMENT-HASH-SUFFIX, a DaemonSet's pods
// DAEMONSET-SUFFIX), and pod labels such as app or pod-template-hash repeat
// parts of the name: the decoded copies of those strings (an owner's name, a
// label value) need not be kept beside the name, which is kept anyway.
func within(s, name string) string {
	if i := strings.Index(name, s); i >= 0 {
		return name[i : i+len(s)]
	}
	return s
}
