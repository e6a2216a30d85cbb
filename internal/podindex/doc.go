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
// Each resource is listed and watched by a reflector that hands every
// object to the index at once (source.go): no informer store, so the index
// holds the only copy. The transform strips each Pod to namespace, name,
// spec.nodeName, its pod labels (allowlisted, already mapped to label names)
// and one owner reference (the controller one); ReplicaSet and Job metadata
// to namespace, name and that owner reference. No UID, phase or deletion
// timestamp: pods are matched by name, a terminating or finished pod still
// exists and its node is still right, the deleted grace starts at the delete
// event. workload and workload_type are kept apart from the pod labels
// (PodInfo), so no merged label set is stored per pod. Deleted pods are kept
// as tombstones for DeletedGrace, at most MaxTombstones of them.
//
// Snapshot shards are open-addressing tables of entry pointers (shard.go),
// and an owner name or label value the object's name contains shares the
// name's memory (within). TestMemoryPerPod (30,000 pods, six labels each,
// all kept, workloads on): 13.9 MB, 487 bytes a pod. The whole relay's
// figure, target caches included, is e2e/loadbench's TestPodIndexMemory
// (39.9 MB for 30,000 pods with loadbench's four labels).
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
