package podindex

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// clusterPod is a realistically sized Pod as the apiserver sends it: six
// labels, annotations, managed fields, a container with env and resources,
// status with conditions; 10 pods per ReplicaSet, 100 namespaces, 500
// nodes.
func clusterPod(i int) *v1.Pod {
	ns := fmt.Sprintf("team-%03d", i/10%100)
	rs := fmt.Sprintf("service-%05d-7d9f8b6c5d", i/10)
	p := mkPod(ns, fmt.Sprintf("%s-%05x", rs, i), fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal", i%500/250, i%250),
		map[string]string{
			"app.kubernetes.io/name":      fmt.Sprintf("service-%05d", i/10),
			"app.kubernetes.io/instance":  "prod",
			"app.kubernetes.io/component": "api",
			"pod-template-hash":           "7d9f8b6c5d",
			"team":                        ns,
			"version":                     "v1.42.0",
		},
		ref("ReplicaSet", rs, true))
	// A decoder allocates every string anew; literals would share memory
	// and flatter the figure.
	for k, v := range p.Labels {
		p.Labels[k] = strings.Clone(v)
	}
	p.UID = types.UID(fmt.Sprintf("3f2a9c1e-0b7d-4c55-9a1e-%012d", i))
	p.Annotations["kubectl.kubernetes.io/restartedAt"] = "2026-01-01T00:00:00Z"
	p.ManagedFields = append(p.ManagedFields, metav1.ManagedFieldsEntry{Manager: "kubelet", Operation: "Update", Subresource: "status",
		FieldsV1: metav1.NewFieldsV1(strings.Repeat("x", 2048))})
	p.Spec.Containers[0].Env = []v1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}}
	p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}, {Type: v1.PodScheduled, Status: v1.ConditionTrue}}
	return p
}

// loadCluster feeds n pods (and their ReplicaSets) through the transforms
// and handlers New's sources use; the index is their only store.
func loadCluster(tb testing.TB, ix *Index, n int) {
	tb.Helper()
	for i := 0; i < n; i++ {
		if i%10 == 0 {
			p := clusterPod(i)
			rs := mkReplicaSet(p.Namespace, p.OwnerReferences[0].Name, ref("Deployment", p.Labels["app.kubernetes.io/name"], true))
			obj, _ := stripOwner(rs)
			ix.upsertOwner(kindReplicaSet, obj)
		}
		obj, _ := ix.stripPod(clusterPod(i))
		ix.upsertPod(obj)
	}
	ix.markSynced()
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestMemoryPerPod measures what 30,000 pods add to the heap: the index's
// state (its only copy of each stripped pod) and a snapshot. The whole
// relay's figure, target caches included, is e2e/loadbench's
// TestPodIndexMemory.
func TestMemoryPerPod(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 30,000 pods")
	}
	const n = 30000
	ix, _ := staticIndex(t, nil) // all labels, workloads on
	before := heapInUse()
	loadCluster(t, ix, n)
	snap := ix.Snapshot()
	after := heapInUse()
	if snap.Len() != n {
		t.Fatalf("%d pods indexed", snap.Len())
	}
	if info, ok := snap.Lookup(clusterPod(7).Namespace, clusterPod(7).Name); !ok || len(info.Labels()) != 8 {
		t.Fatalf("pod 7: %v", info)
	}
	grew := int64(after) - int64(before)
	t.Logf("%d pods (6 labels each, all kept; %d ReplicaSets): heap +%.1f MB, %d bytes per pod", n, n/10, float64(grew)/(1<<20), grew/n)
	if grew > 50<<20 {
		t.Fatalf("30,000 pods add %.1f MB, more than 50 MB", float64(grew)/(1<<20))
	}
}

// TestMemoryPerTombstone measures what the tombstones of deleted pods hold:
// at most MaxTombstones of them.
func TestMemoryPerTombstone(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 30,000 pods")
	}
	const n = 30000
	ix, _ := staticIndex(t, nil)
	before := heapInUse()
	loadCluster(t, ix, n)
	for i := 0; i < n; i++ {
		p := clusterPod(i)
		ix.deletePod(cache.DeletedFinalStateUnknown{Key: p.Namespace + "/" + p.Name})
	}
	snap := ix.Snapshot()
	grew := int64(heapInUse()) - int64(before)
	if ix.nTombs != min(n, DefaultMaxTombstones) || ix.nLive != 0 || snap.Len() != ix.nTombs {
		t.Fatalf("%d tombstones, %d live, %d in the snapshot", ix.nTombs, ix.nLive, snap.Len())
	}
	t.Logf("%d pods deleted: %d tombstones (the limit) hold %.1f MB (with %d ReplicaSets), %d bytes each",
		n, ix.nTombs, float64(grew)/(1<<20), n/10, grew/int64(ix.nTombs))
	if grew > int64(ix.nTombs)*2048 {
		t.Fatalf("tombstones take %d bytes each, more than 2 KB", grew/int64(ix.nTombs))
	}
}

func benchIndex(b *testing.B, n int) (*Index, *Snapshot) {
	clock := newClock()
	o := testOptions(clock, nil)
	cfg, err := o.Config()
	if err != nil {
		b.Fatal(err)
	}
	ix := newIndex(cfg)
	loadCluster(b, ix, n)
	return ix, ix.Snapshot()
}

func BenchmarkLookup(b *testing.B) {
	_, s := benchIndex(b, 30000)
	keys := make([]podKey, 1024)
	for i := range keys {
		p := clusterPod(i * 29)
		keys[i] = podKey{p.Namespace, p.Name}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		k := keys[i&1023]
		if _, ok := s.Lookup(k.namespace, k.name); !ok {
			b.Fatal("missing")
		}
	}
}

func BenchmarkOnNode(b *testing.B) {
	_, s := benchIndex(b, 30000)
	p := clusterPod(4242)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if s.OnNode(p.Namespace, p.Name, p.Spec.NodeName, now) != Yes {
			b.Fatal("not on its node")
		}
	}
}

// BenchmarkSnapshotAfterChange is a pod relabel followed by the next
// reader's Snapshot, with 30,000 pods: one shard is copied.
func BenchmarkSnapshotAfterChange(b *testing.B) {
	ix, _ := benchIndex(b, 30000)
	p := clusterPod(4242)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.Labels["version"] = fmt.Sprint(i)
		obj, _ := ix.stripPod(p)
		ix.upsertPod(obj)
		ix.Snapshot()
	}
}

func TestLookupAllocatesNothing(t *testing.T) {
	ix, _ := staticIndex(t, nil)
	ix.markSynced()
	p := mkPod("shop", "web", "node-a", map[string]string{"app": "web"})
	ix.add(p)
	s := ix.Snapshot()
	now := time.Now()
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := s.Lookup("shop", "web"); !ok {
			t.Fatal("missing")
		}
		if s.OnNode("shop", "web", "node-a", now) != Yes || s.OnNode("shop", "nope", "node-a", now) == Yes {
			t.Fatal("wrong verdict")
		}
		if ix.Snapshot() != s {
			t.Fatal("new snapshot without a change")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per lookup", allocs)
	}
}
