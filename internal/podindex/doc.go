// Package podindex watches Pods (and, for workloads, ReplicaSets and Jobs)
// and publishes an immutable snapshot, (namespace, pod name) -> labels to
// add, for the enrichment path, and answers whether the apiserver places a
// pod on a node (OnNode) for the pod-on-node check.
//
// Pods are matched by namespace and name, not UID: cAdvisor's pod UIDs need
// not match the apiserver's.
//
// # Memory
//
// The Pod informer's transform strips each Pod, before the informer stores
// it, to namespace, name, UID, spec.nodeName, the allowlisted labels and one
// owner reference (the controller one). ReplicaSet and Job metadata are
// stripped to namespace, name and that owner reference. Phase and deletion
// timestamp are not kept: a terminating or finished pod still exists and its
// node is still right; the deleted grace starts at the delete event.
// Deleted pods are kept as tombstones for DeletedGrace, at most MaxTombstones
// of them. TestMemoryPerPod measures the heap 30,000 pods add (six labels
// each, all kept, workloads on, informer stores included): 32.5 MB, about
// 1,140 bytes a pod.
//
// # Workloads
//
// workload and workload_type follow kubernetes-mixin's recording rule
// namespace_workload_pod:kube_pod_owner:relabel; see resolveWorkload.
//
// # RBAC
//
// The index needs, in the relay's ClusterRole (only when a pod feature is
// on):
//
//   - apiGroups: [""]
//     resources: ["pods"]
//     verbs: ["list", "watch"]
//     # only with workload labels; read as metadata (PartialObjectMetadata),
//     # which needs the same verbs as full objects:
//   - apiGroups: ["apps"]
//     resources: ["replicasets"]
//     verbs: ["list", "watch"]
//   - apiGroups: ["batch"]
//     resources: ["jobs"]
//     verbs: ["list", "watch"]
//
// In kubelet mode the pod list/watch carries the field selector
// spec.nodeName=NODE; RBAC cannot restrict by field, so the rule is the
// same (the NodeRestriction-style scoping is the selector's, not RBAC's).
package podindex
