package podindex

// Owner kinds as they appear in ownerReferences (and so in kube-state-metrics'
// owner_kind label), matched case-sensitively as the recording rule does.
const (
	kindReplicaSet  = "ReplicaSet"
	kindDeployment  = "Deployment"
	kindDaemonSet   = "DaemonSet"
	kindStatefulSet = "StatefulSet"
	kindJob         = "Job"
	kindNode        = "Node"
	kindPod         = "Pod"
)

// Workload types written by kubernetes-mixin's recording rule
// namespace_workload_pod:kube_pod_owner:relabel for the kinds it names; any
// other owner kind is written verbatim (e.g. "CronJob").
const (
	TypeDeployment  = "deployment"
	TypeReplicaSet  = "replicaset"
	TypeDaemonSet   = "daemonset"
	TypeStatefulSet = "statefulset"
	TypeJob         = "job"
	TypeBarePod     = "barepod"
	TypeStaticPod   = "staticpod"
)

// ownerRef is the one owner reference the index keeps of an object: its
// controller reference, or, when none is marked controller, its first one.
// Kind "" means the object has no owner reference at all.
type ownerRef struct {
	kind, name string
}

// ownerLookup answers what the index knows of the ReplicaSet or Job ns/name:
// its own owner, and whether the object is known at all.
type ownerLookup func(kind, namespace, name string) (owner ownerRef, known bool)

// resolveWorkload computes workload and workload_type exactly as
// kubernetes-mixin's namespace_workload_pod:kube_pod_owner:relabel does from
// kube_pod_owner, kube_replicaset_owner and kube_job_owner (joins on namespace
// and name, never on UID; owner_is_controller is not filtered on):
//
//   - no owner reference: the pod's name, barepod
//   - owner kind Node: the pod's name, staticpod
//   - ReplicaSet without owner: the ReplicaSet, replicaset
//   - ReplicaSet owned by a Deployment: the Deployment, deployment
//   - ReplicaSet owned by kind K: that owner, K verbatim
//   - DaemonSet, StatefulSet: the owner, daemonset / statefulset
//   - Job without owner (or owned by a Pod): the Job, job
//   - Job owned by kind K (e.g. CronJob): that owner, K verbatim
//   - any other kind K: the owner, K verbatim
//
// A ReplicaSet or Job the index does not know gives no row in the rule (its
// *_owner series is missing), so resolved is false and nothing is added.
//
// The rule yields one row per owner reference; a series can carry one
// workload, so the index follows the controller reference (see ownerRef).
func resolveWorkload(namespace, pod string, owner ownerRef, lookup ownerLookup) (workload, workloadType string, resolved bool) {
	switch owner.kind {
	case "":
		return pod, TypeBarePod, true
	case kindNode:
		return pod, TypeStaticPod, true
	case kindDaemonSet:
		return owner.name, TypeDaemonSet, true
	case kindStatefulSet:
		return owner.name, TypeStatefulSet, true
	case kindReplicaSet:
		up, ok := lookup(kindReplicaSet, namespace, owner.name)
		switch {
		case !ok:
			return "", "", false
		case up.kind == "":
			return owner.name, TypeReplicaSet, true
		case up.kind == kindDeployment:
			return up.name, TypeDeployment, true
		default:
			return up.name, up.kind, true
		}
	case kindJob:
		up, ok := lookup(kindJob, namespace, owner.name)
		switch {
		case !ok:
			return "", "", false
		case up.kind == "" || up.kind == kindPod:
			return owner.name, TypeJob, true
		default:
			return up.name, up.kind, true
		}
	default:
		return owner.name, owner.kind, true
	}
}
