package podindex

import (
	"sync/atomic"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
)

// The snapshot is split into shards by pod key so that a change copies one
// shard's table (shard.go), not every pod's: with 30,000 pods a rebuild
// copies ~470 entries instead of 30,000.
const (
	shardBits = 6
	numShards = 1 << shardBits
)

type podKey struct{ namespace, name string }

// PodInfo is what the index adds for one pod: its pod labels and, with
// workloads on and the owner resolved, workload and workload_type. They are
// kept apart, so that a pod's labels are stored once (in the stripped pod)
// and not again merged with its workload: AppendLabels merges them.
type PodInfo struct {
	// PodLabels are the pod labels to add, sorted by name; never named
	// workload or workload_type while workloads are on.
	PodLabels []enrich.Label
	// Workload and WorkloadType are "" when workloads are off or the owner
	// is unresolved.
	Workload, WorkloadType string
	// Version changes whenever the labels change, and only then.
	Version uint64
}

// AppendLabels appends every label the index adds for the pod, sorted by
// name, to dst.
func (p PodInfo) AppendLabels(dst []enrich.Label) []enrich.Label {
	return appendWithWorkload(dst, p.PodLabels, p.Workload, p.WorkloadType)
}

// Labels returns AppendLabels(nil).
func (p PodInfo) Labels() []enrich.Label { return p.AppendLabels(nil) }

// entry is the immutable published state of one pod name.
type entry struct {
	// pod is the live pod, or the last one seen once deleted; live is false
	// when only a tombstone is left. Its labels are the pod labels added.
	pod                    *pod
	workload, workloadType string // "" unless workloads are on and resolved
	version                uint64
	// gone describes the last deleted incarnation of the name, kept for the
	// deleted grace; nil: none (most entries: a pointer, not 32 bytes each).
	gone       *goneRec
	live       bool
	unresolved bool // live, and its ReplicaSet or Job is unknown
}

func (e *entry) info() PodInfo {
	return PodInfo{PodLabels: e.pod.labels, Workload: e.workload, WorkloadType: e.workloadType, Version: e.version}
}

// goneRec is a tombstone: the node a deleted pod ran on, when it was
// deleted (unix nanoseconds), and seq, which identifies the tombstone.
type goneRec struct {
	node string
	at   int64
	seq  uint64
}

// health is shared by all snapshots of an index: it changes without any pod
// changing, and a snapshot taken earlier should see it.
type health struct {
	synced atomic.Bool
	// blindSince (unix ns) is the last moment the index may have missed pods:
	// the end of the initial sync, or the last list/watch error.
	blindSince atomic.Int64
}

// Snapshot is an immutable view of the index. A nil *Snapshot knows no pod.
type Snapshot struct {
	generation uint64
	shards     [numShards]shard
	node       string
	graces     graces
	health     *health
}

type graces struct{ deleted, unknown time.Duration }

// Generation identifies the snapshot; it grows with every change.
func (s *Snapshot) Generation() uint64 {
	if s == nil {
		return 0
	}
	return s.generation
}

// Len is the number of pod names in the snapshot, tombstones included.
func (s *Snapshot) Len() int {
	if s == nil {
		return 0
	}
	n := 0
	for i := range s.shards {
		n += s.shards[i].n
	}
	return n
}

func (s *Snapshot) get(namespace, pod string) *entry {
	if s == nil {
		return nil
	}
	h := podHash(namespace, pod)
	return s.shards[shardOf(h)].find(h, namespace, pod)
}

// Lookup returns the labels the index adds for namespace/pod. A pod deleted
// less than the deleted grace ago is still found (its series are still
// reported by cAdvisor), with the labels it had.
func (s *Snapshot) Lookup(namespace, pod string) (PodInfo, bool) {
	e := s.get(namespace, pod)
	if e == nil {
		return PodInfo{}, false
	}
	return e.info(), true
}

// PodName returns the index's copy of the name of namespace/pod, so that
// callers keeping the name need not copy it again.
func (s *Snapshot) PodName(namespace, pod string) (string, bool) {
	e := s.get(namespace, pod)
	if e == nil {
		return "", false
	}
	return e.pod.name, true
}

// Verdict answers whether a pod runs on a node.
type Verdict uint8

const (
	// Unknown: the index cannot tell yet (not synced, or the pod is unknown
	// while the index may have missed it, see OnNode).
	Unknown Verdict = iota
	// Yes: the apiserver places the pod on the node, or did until less than
	// the deleted grace ago.
	Yes
	// No: the apiserver places the pod elsewhere, or does not know it.
	No
)

func (v Verdict) String() string {
	switch v {
	case Yes:
		return "yes"
	case No:
		return "no"
	default:
		return "unknown"
	}
}

// OnNode tells whether the apiserver places namespace/pod on node at now:
//
//   - Yes when the live pod's spec.nodeName is node, or when a pod of that
//     name was deleted from node less than the deleted grace before now
//     (cAdvisor keeps a deleted pod's cgroup for a while; a StatefulSet pod
//     re-created elsewhere keeps its old node's tombstone).
//   - No when the live pod is bound to another node.
//   - Otherwise the pod is not (yet) known here: Unknown while the index may
//     have missed it, that is less than the unknown grace after the initial
//     sync or after the last list/watch error (a relist follows), and No
//     afterwards. While the watch is healthy the index learns of a pod well
//     under a second after its binding, before its kubelet can have started
//     a container, so a pod unknown to a healthy index is not on the node;
//     an unscheduled pod (nodeName "" in cluster-wide mode) is treated the
//     same, its binding may be in flight.
//
// Before the initial sync every answer is Unknown. In kubelet mode (index
// restricted to one node) a question about another node is Unknown: the index
// does not watch that node's pods.
func (s *Snapshot) OnNode(namespace, pod, node string, now time.Time) Verdict {
	if s == nil || !s.health.synced.Load() {
		return Unknown
	}
	if s.node != "" && node != s.node {
		return Unknown
	}
	if e := s.get(namespace, pod); e != nil {
		if e.live && e.pod.nodeName == node {
			return Yes
		}
		if g := e.gone; g != nil && g.node == node && now.UnixNano()-g.at <= int64(s.graces.deleted) {
			return Yes
		}
		if e.live && e.pod.nodeName != "" {
			return No
		}
	}
	if now.UnixNano()-s.health.blindSince.Load() <= int64(s.graces.unknown) {
		return Unknown
	}
	return No
}
