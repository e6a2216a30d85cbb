package podindex

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
)

// workloadCase is one pod and its expected workload labels, as kubernetes-
// mixin's namespace_workload_pod:kube_pod_owner:relabel computes them from
// kube-state-metrics' kube_pod_owner, kube_replicaset_owner, kube_job_owner.
type workloadCase struct {
	name       string
	pod        *v1.Pod
	owners     []runtime.Object // ReplicaSets and Jobs the pod's chain needs
	workload   string           // "" = the rule gives no row: no workload labels
	wtype      string
	unresolved bool
}

func workloadCases() []workloadCase {
	const ns = "shop"
	return []workloadCase{
		{name: "Deployment via ReplicaSet",
			pod:      mkPod(ns, "web-7d9f-x1", "node-a", map[string]string{"app": "web", "pod-template-hash": "7d9f"}, ref("ReplicaSet", "web-7d9f", true)),
			owners:   []runtime.Object{mkReplicaSet(ns, "web-7d9f", ref("Deployment", "web", true))},
			workload: "web", wtype: "deployment"},
		{name: "bare ReplicaSet",
			pod:      mkPod(ns, "lonely-x1", "node-a", nil, ref("ReplicaSet", "lonely", true)),
			owners:   []runtime.Object{mkReplicaSet(ns, "lonely")},
			workload: "lonely", wtype: "replicaset"},
		{name: "ReplicaSet owned by another kind (Argo Rollout)",
			pod:      mkPod(ns, "roll-5c-x1", "node-a", nil, ref("ReplicaSet", "roll-5c", true)),
			owners:   []runtime.Object{mkReplicaSet(ns, "roll-5c", ref("Rollout", "roll", true))},
			workload: "roll", wtype: "Rollout"},
		{name: "DaemonSet",
			pod:      mkPod(ns, "agent-x1", "node-a", nil, ref("DaemonSet", "agent", true)),
			workload: "agent", wtype: "daemonset"},
		{name: "StatefulSet",
			pod:      mkPod(ns, "db-0", "node-a", nil, ref("StatefulSet", "db", true)),
			workload: "db", wtype: "statefulset"},
		{name: "bare Job",
			pod:      mkPod(ns, "migrate-x1", "node-a", nil, ref("Job", "migrate", true)),
			owners:   []runtime.Object{mkJob(ns, "migrate")},
			workload: "migrate", wtype: "job"},
		{name: "CronJob via Job",
			pod:      mkPod(ns, "backup-2890-x1", "node-a", nil, ref("Job", "backup-2890", true)),
			owners:   []runtime.Object{mkJob(ns, "backup-2890", ref("CronJob", "backup", true))},
			workload: "backup", wtype: "CronJob"},
		{name: "Job owned by a Pod counts as bare",
			pod:      mkPod(ns, "pj-x1", "node-a", nil, ref("Job", "pj", true)),
			owners:   []runtime.Object{mkJob(ns, "pj", ref("Pod", "runner", false))},
			workload: "pj", wtype: "job"},
		{name: "bare pod",
			pod:      mkPod(ns, "debug", "node-a", nil),
			workload: "debug", wtype: "barepod"},
		{name: "static pod (owner kind Node)",
			pod:      mkPod(ns, "kube-apiserver-node-a", "node-a", nil, ref("Node", "node-a", true)),
			workload: "kube-apiserver-node-a", wtype: "staticpod"},
		{name: "unknown owner kind, verbatim",
			pod:      mkPod(ns, "etl-driver", "node-a", nil, ref("SparkApplication", "etl", true)),
			workload: "etl", wtype: "SparkApplication"},
		{name: "ReplicaSet unknown: no row, no labels",
			pod:        mkPod(ns, "ghost-x1", "node-a", map[string]string{"app": "ghost"}, ref("ReplicaSet", "ghost", true)),
			unresolved: true},
		{name: "Job unknown: no row, no labels",
			pod:        mkPod(ns, "ghostjob-x1", "node-a", nil, ref("Job", "ghostjob", true)),
			unresolved: true},
		{name: "several owners: the controller one",
			pod:      mkPod(ns, "multi-0", "node-a", nil, ref("ConfigMap", "cfg", false), ref("StatefulSet", "multi", true)),
			workload: "multi", wtype: "statefulset"},
		{name: "one owner not marked controller still counts",
			pod:      mkPod(ns, "nc-x1", "node-a", nil, ref("DaemonSet", "nc", false)),
			workload: "nc", wtype: "daemonset"},
	}
}

func TestWorkloadLabels(t *testing.T) {
	cases := workloadCases()
	var objs []runtime.Object
	for _, c := range cases {
		objs = append(objs, c.pod)
		objs = append(objs, c.owners...)
	}
	b := startBed(t, nil, objs...)
	snap := b.ix.Snapshot()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, ok := snap.Lookup(c.pod.Namespace, c.pod.Name)
			if !ok {
				t.Fatal("pod not in the index")
			}
			want := map[string]string{}
			for k, v := range c.pod.Labels {
				want[enrich.SanitizeLabelName(k)] = v
			}
			if c.workload != "" {
				want[LabelWorkload], want[LabelWorkloadType] = c.workload, c.wtype
			}
			if got := labelMap(info.Labels()); !reflect.DeepEqual(got, want) {
				t.Fatalf("labels %v, want %v", got, want)
			}
			if !isSorted(info.Labels()) {
				t.Fatalf("labels not sorted: %v", info.Labels())
			}
		})
	}
	unres := 0
	for _, c := range cases {
		if c.unresolved {
			unres++
		}
	}
	if got := testutil.ToFloat64(b.ix.metrics.unresolved); got != float64(unres) {
		t.Errorf("unresolved gauge %v, want %d", got, unres)
	}
	if got := testutil.ToFloat64(b.ix.metrics.resolved); got != float64(len(cases)-unres) {
		t.Errorf("resolved gauge %v, want %d", got, len(cases)-unres)
	}
	if got := testutil.ToFloat64(b.ix.metrics.pods); got != float64(len(cases)) {
		t.Errorf("pods gauge %v", got)
	}
}

func isSorted(ls []enrich.Label) bool {
	for i := 1; i < len(ls); i++ {
		if ls[i-1].Name >= ls[i].Name {
			return false
		}
	}
	return true
}

func TestUpdatesChangeOnlyThatPodsVersion(t *testing.T) {
	ctx := context.Background()
	const ns = "shop"
	b := startBed(t, nil,
		mkPod(ns, "web-1", "node-a", map[string]string{"app": "web"}, ref("ReplicaSet", "web-rs", true)),
		mkPod(ns, "web-2", "node-a", map[string]string{"app": "web"}, ref("ReplicaSet", "web-rs", true)),
		mkPod(ns, "other", "node-a", map[string]string{"app": "other"}),
		mkReplicaSet(ns, "web-rs"),
	)
	s0 := b.ix.Snapshot()
	v := func(s *Snapshot, pod string) uint64 {
		t.Helper()
		info, ok := s.Lookup(ns, pod)
		if !ok {
			t.Fatalf("%s not in the index", pod)
		}
		return info.Version
	}
	lbl := func(s *Snapshot, pod, name string) string {
		info, _ := s.Lookup(ns, pod)
		return labelMap(info.Labels())[name]
	}
	if lbl(s0, "web-1", "workload_type") != "replicaset" {
		t.Fatalf("web-1 labels %v", labelMap(must(s0.Lookup(ns, "web-1")).Labels()))
	}

	// A status-only update (stripped away by the transform) changes nothing.
	p := mkPod(ns, "web-1", "node-a", map[string]string{"app": "web"}, ref("ReplicaSet", "web-rs", true))
	p.Status.Phase = v1.PodSucceeded
	if _, err := b.pods.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A label change on web-2: only web-2's version changes.
	p2 := mkPod(ns, "web-2", "node-a", map[string]string{"app": "web", "tier": "gold"}, ref("ReplicaSet", "web-rs", true))
	if _, err := b.pods.CoreV1().Pods(ns).Update(ctx, p2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web-2 relabelled", func() bool { return lbl(b.ix.Snapshot(), "web-2", "tier") == "gold" })
	s1 := b.ix.Snapshot()
	// The status-only update (handled before web-2's) kept the stripped
	// web-1 the index had.
	if e0, e1 := s0.get(ns, "web-1"), s1.get(ns, "web-1"); e0.pod != e1.pod {
		t.Fatal("an unchanged pod was replaced by a copy")
	}
	if v(s1, "web-2") == v(s0, "web-2") {
		t.Fatal("web-2's version did not change with its labels")
	}
	if v(s1, "web-1") != v(s0, "web-1") || v(s1, "other") != v(s0, "other") {
		t.Fatal("a version changed although that pod's labels did not")
	}
	if s1.Generation() <= s0.Generation() {
		t.Fatal("generation did not grow")
	}
	if lbl(s0, "web-2", "tier") != "" {
		t.Fatal("an earlier snapshot was modified")
	}

	// The ReplicaSet is adopted by a Deployment (a new owner): its two pods
	// get new versions, "other" keeps its own.
	if err := b.meta.Tracker().Update(replicaSetsResource, mkReplicaSet(ns, "web-rs", ref("Deployment", "web", true)), ns); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web-rs adopted", func() bool {
		s := b.ix.Snapshot()
		return lbl(s, "web-1", "workload") == "web" && lbl(s, "web-2", "workload") == "web"
	})
	s2 := b.ix.Snapshot()
	if lbl(s2, "web-1", "workload_type") != "deployment" {
		t.Fatalf("web-1 %v", labelMap(must(s2.Lookup(ns, "web-1")).Labels()))
	}
	if v(s2, "web-1") == v(s1, "web-1") || v(s2, "web-2") == v(s1, "web-2") {
		t.Fatal("the new owner did not change the versions of its pods")
	}
	if v(s2, "other") != v(s0, "other") {
		t.Fatal("other's version changed")
	}

	// The ReplicaSet is deleted: its pods' workload is unresolved, so
	// their workload labels go (the rule has no row for them either).
	if err := b.meta.Tracker().Delete(replicaSetsResource, ns, "web-rs"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web-rs gone", func() bool { return lbl(b.ix.Snapshot(), "web-1", "workload") == "" })
	if got := testutil.ToFloat64(b.ix.metrics.unresolved); got != 2 {
		t.Fatalf("unresolved %v", got)
	}
	// A no-op update after all that builds no new snapshot.
	s3 := b.ix.Snapshot()
	if _, err := b.pods.CoreV1().Pods(ns).Update(ctx, mkPod(ns, "other", "node-a", map[string]string{"app": "other"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if b.ix.Snapshot() != s3 {
		t.Fatal("an update that changes nothing the index keeps built a new snapshot")
	}
}

func must(info PodInfo, ok bool) PodInfo {
	if !ok {
		panic("not found")
	}
	return info
}

func TestNodeFieldSelector(t *testing.T) {
	const ns = "shop"
	b := startBed(t, func(o *Options) { o.Node = "node-a" },
		mkPod(ns, "here", "node-a", nil),
		mkPod(ns, "there", "node-b", nil),
	)
	// The informer is synced after its list; its watch may start a moment later.
	var sel []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		sel = sel[:0]
		for _, a := range b.pods.Actions() {
			if a.GetResource().Resource != "pods" {
				continue
			}
			switch a := a.(type) {
			case clienttesting.ListAction:
				sel = append(sel, "list:"+a.GetListRestrictions().Fields.String())
			case clienttesting.WatchAction:
				sel = append(sel, "watch:"+a.GetWatchRestrictions().Fields.String())
			}
		}
		if len(sel) >= 2 || time.Now().After(deadline) {
			break
		}
	}
	if len(sel) < 2 || sel[0] != "list:spec.nodeName=node-a" || sel[1] != "watch:spec.nodeName=node-a" {
		t.Fatalf("pod list/watch field selectors %v", sel)
	}
	// The fake clientset ignores field selectors; the index still keeps
	// other nodes' pods out.
	s := b.ix.Snapshot()
	if _, ok := s.Lookup(ns, "here"); !ok {
		t.Fatal("node-a's pod missing")
	}
	if _, ok := s.Lookup(ns, "there"); ok {
		t.Fatal("node-b's pod indexed in kubelet mode for node-a")
	}
	now := b.clock.Add(DefaultUnknownGrace + time.Second)
	if got := s.OnNode(ns, "here", "node-a", now); got != Yes {
		t.Fatalf("here on node-a: %v", got)
	}
	if got := s.OnNode(ns, "there", "node-a", now); got != No {
		t.Fatalf("there on node-a: %v", got)
	}
	if got := s.OnNode(ns, "here", "node-b", now); got != Unknown {
		t.Fatalf("a question about another node in kubelet mode: %v", got)
	}
}
