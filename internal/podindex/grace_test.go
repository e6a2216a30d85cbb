package podindex

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// staticIndex is an index without informers, fed through the same
// transform and handlers the informers call.
func staticIndex(t *testing.T, tweak func(*Options)) (*Index, *fakeClock) {
	t.Helper()
	clock := newClock()
	o := testOptions(clock, prometheus.NewRegistry())
	if tweak != nil {
		tweak(&o)
	}
	cfg, err := o.Config()
	if err != nil {
		t.Fatal(err)
	}
	return newIndex(cfg), clock
}

func (ix *Index) add(p *v1.Pod) {
	obj, _ := ix.stripPod(p)
	ix.upsertPod(obj)
}

func (ix *Index) del(p *v1.Pod) {
	obj, _ := ix.stripPod(p)
	ix.deletePod(obj)
}

func TestOnNodeGraces(t *testing.T) {
	ix, clock := staticIndex(t, nil)
	const ns = "shop"
	ix.add(mkPod(ns, "web", "node-a", map[string]string{"app": "web"}))
	if got := ix.OnNode(ns, "web", "node-a", clock.Now()); got != Unknown {
		t.Fatalf("before the initial sync: %v", got)
	}
	ix.markSynced()
	t0 := clock.Now()
	check := func(pod, node string, at time.Time, want Verdict) {
		t.Helper()
		if got := ix.OnNode(ns, pod, node, at); got != want {
			t.Fatalf("%s on %s at +%v: %v, want %v", pod, node, at.Sub(t0), got, want)
		}
	}
	check("web", "node-a", t0, Yes)
	check("web", "node-b", t0, No)
	// An unknown pod: Unknown for the unknown grace after the sync, then No.
	check("new", "node-a", t0.Add(DefaultUnknownGrace), Unknown)
	check("new", "node-a", t0.Add(DefaultUnknownGrace+time.Nanosecond), No)

	// A watch error restarts the unknown grace (a relist follows; events
	// may have been missed meanwhile).
	tErr := clock.Add(10 * time.Minute)
	check("new", "node-a", tErr, No)
	ix.watchFailed("pods", errors.New("watch closed"))
	check("new", "node-a", tErr.Add(DefaultUnknownGrace), Unknown)
	check("new", "node-a", tErr.Add(DefaultUnknownGrace+time.Second), No)
	if got := testutil.ToFloat64(ix.metrics.watchErrors); got != 1 {
		t.Fatalf("watch errors %v", got)
	}

	// A deleted pod: Yes on its node (and its labels kept) for the
	// deleted grace, then treated as unknown.
	tDel := clock.Add(time.Hour)
	ix.del(mkPod(ns, "web", "node-a", nil))
	check("web", "node-a", tDel.Add(time.Second), Yes)
	check("web", "node-a", tDel.Add(DefaultDeletedGrace), Yes)
	check("web", "node-b", tDel.Add(time.Second), No)
	check("web", "node-a", tDel.Add(DefaultDeletedGrace+time.Nanosecond), No)
	if info, ok := ix.Snapshot().Lookup(ns, "web"); !ok || labelMap(info.Labels())["app"] != "web" {
		t.Fatalf("a tombstone's labels: %v %v", info, ok)
	}
	if got := testutil.ToFloat64(ix.metrics.tombstones); got != 1 {
		t.Fatalf("tombstones %v", got)
	}
	ix.Sweep(tDel.Add(DefaultDeletedGrace - time.Second))
	if _, ok := ix.Snapshot().Lookup(ns, "web"); !ok {
		t.Fatal("swept before the grace ended")
	}
	ix.Sweep(tDel.Add(DefaultDeletedGrace + time.Second))
	if _, ok := ix.Snapshot().Lookup(ns, "web"); ok {
		t.Fatal("tombstone not swept after the grace")
	}
	if got := testutil.ToFloat64(ix.metrics.tombstones); got != 0 {
		t.Fatalf("tombstones %v after the sweep", got)
	}

	// A StatefulSet pod re-created on another node: its old node keeps the
	// tombstone's Yes for the grace, the new node is Yes.
	ix.add(mkPod(ns, "db-0", "node-a", nil, ref("StatefulSet", "db", true)))
	tMove := clock.Add(time.Hour)
	ix.del(mkPod(ns, "db-0", "node-a", nil))
	moved := mkPod(ns, "db-0", "node-b", nil, ref("StatefulSet", "db", true))
	moved.UID = "uid-new"
	ix.add(moved)
	check("db-0", "node-b", tMove, Yes)
	check("db-0", "node-a", tMove.Add(time.Minute), Yes)
	check("db-0", "node-c", tMove.Add(time.Minute), No)
	check("db-0", "node-a", tMove.Add(DefaultDeletedGrace+time.Second), No)
	ix.Sweep(tMove.Add(DefaultDeletedGrace + time.Second))
	check("db-0", "node-b", tMove.Add(DefaultDeletedGrace+time.Second), Yes)
	if got := testutil.ToFloat64(ix.metrics.tombstones); got != 0 {
		t.Fatalf("tombstones %v", got)
	}

	// An unscheduled pod (cluster-wide mode): its binding may be in flight,
	// so it is handled like an unknown pod.
	ix.add(mkPod(ns, "pending", "", nil))
	tPend := clock.Now()
	check("pending", "node-a", tPend, No) // the index is not blind now
	ix.watchFailed("pods", errors.New("relist"))
	check("pending", "node-a", tPend, Unknown)
}

func TestDeleteTombstoneFromDeletedFinalStateUnknown(t *testing.T) {
	ix, clock := staticIndex(t, nil)
	ix.markSynced()
	ix.add(mkPod("shop", "web", "node-a", nil))
	obj, _ := ix.stripPod(cache.DeletedFinalStateUnknown{Key: "shop/web", Obj: mkPod("shop", "web", "node-a", nil)})
	ix.deletePod(obj)
	if got := ix.OnNode("shop", "web", "node-a", clock.Now().Add(time.Second)); got != Yes {
		t.Fatalf("%v", got)
	}
	if got := testutil.ToFloat64(ix.metrics.pods); got != 0 {
		t.Fatalf("live pods %v", got)
	}
}

func TestTombstoneLimit(t *testing.T) {
	ix, clock := staticIndex(t, func(o *Options) { o.MaxTombstones = 3 })
	ix.markSynced()
	names := []string{"p0", "p1", "p2", "p3", "p4"}
	for _, n := range names {
		ix.add(mkPod("shop", n, "node-a", nil))
	}
	for _, n := range names {
		clock.Add(time.Second)
		ix.del(mkPod("shop", n, "node-a", nil))
	}
	now := clock.Now()
	for i, n := range names {
		want := Yes
		if i < 2 { // the oldest two were forgotten early
			want = No
		}
		if got := ix.OnNode("shop", n, "node-a", now.Add(DefaultUnknownGrace)); got != want {
			t.Errorf("%s: %v, want %v", n, got, want)
		}
	}
	if got := testutil.ToFloat64(ix.metrics.evicted); got != 2 {
		t.Fatalf("evicted %v", got)
	}
	if got := testutil.ToFloat64(ix.metrics.tombstones); got != 3 || ix.nTombs != 3 {
		t.Fatalf("tombstones %v", got)
	}
	if got := ix.Snapshot().Len(); got != 3 {
		t.Fatalf("%d names in the snapshot", got)
	}
	// The queue does not grow without bound under churn.
	for i := range 10000 {
		p := mkPod("churn", "c", "node-a", nil)
		p.UID = "u"
		ix.add(p)
		ix.del(p)
		if i%1000 == 0 {
			clock.Add(time.Second)
		}
	}
	if len(ix.tombstones) > 10 || cap(ix.tombstones) > 1024 {
		t.Fatalf("tombstone queue len %d cap %d", len(ix.tombstones), cap(ix.tombstones))
	}
}

func TestOwnerChangesAndBookkeeping(t *testing.T) {
	ix, _ := staticIndex(t, nil)
	ix.markSynced()
	rs, _ := stripOwner(mkReplicaSet("shop", "web-rs", ref("Deployment", "web", true)))
	ix.upsertOwner(kindReplicaSet, rs)
	p := mkPod("shop", "web-1", "node-a", nil, ref("ReplicaSet", "web-rs", true))
	ix.add(p)
	v0 := must(ix.Snapshot().Lookup("shop", "web-1"))
	if labelMap(v0.Labels())["workload"] != "web" {
		t.Fatalf("%v", v0.Labels())
	}
	// The pod is orphaned, then adopted by a StatefulSet: new labels, new
	// versions, and the ReplicaSet no longer lists it.
	orphan := mkPod("shop", "web-1", "node-a", nil)
	ix.add(orphan)
	v1 := must(ix.Snapshot().Lookup("shop", "web-1"))
	if got := labelMap(v1.Labels()); got["workload"] != "web-1" || got["workload_type"] != "barepod" || v1.Version == v0.Version {
		t.Fatalf("orphaned: %v version %d", got, v1.Version)
	}
	if n := ix.owners[ownerKey{kindReplicaSet, "shop", "web-rs"}].pods.len(); n != 0 {
		t.Fatalf("the ReplicaSet still lists %d pods", n)
	}
	ix.add(mkPod("shop", "web-1", "node-a", nil, ref("StatefulSet", "web", true)))
	v2 := must(ix.Snapshot().Lookup("shop", "web-1"))
	if labelMap(v2.Labels())["workload_type"] != "statefulset" || v2.Version == v1.Version {
		t.Fatalf("adopted: %v", v2)
	}
	// A pod naming a ReplicaSet that is unknown, then deleted with the
	// ReplicaSet: nothing is left behind.
	ix.add(mkPod("shop", "ghost-1", "node-a", nil, ref("ReplicaSet", "ghost", true)))
	if _, ok := ix.owners[ownerKey{kindReplicaSet, "shop", "ghost"}]; !ok {
		t.Fatal("the pod's unknown ReplicaSet is not followed")
	}
	ix.del(mkPod("shop", "ghost-1", "node-a", nil))
	ix.del(mkPod("shop", "web-1", "node-a", nil))
	ix.deleteOwner(kindReplicaSet, rs)
	if len(ix.owners) != 0 {
		t.Fatalf("owner records left: %v", ix.owners)
	}
	if got := testutil.ToFloat64(ix.metrics.unresolved) + testutil.ToFloat64(ix.metrics.resolved) + testutil.ToFloat64(ix.metrics.pods); got != 0 {
		t.Fatalf("gauges not back to 0: %v", got)
	}
}
