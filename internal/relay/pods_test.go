package relay

import (
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/podindex"
)

// capturePod is a pod of the 1.35 cAdvisor capture, with the owner chain
// kind/workload it had in the cluster the capture came from (read off its
// name), and the workload kubernetes-mixin's rule gives it.
type capturePod struct {
	ns, name     string
	owner        metav1.OwnerReference // Kind "" for none
	rsOwner      string                // Deployment owning the ReplicaSet, if any
	workload, wt string
}

func ctl(kind, name string) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{APIVersion: "v1", Kind: kind, Name: name, Controller: &t}
}

var capturePods = []capturePod{
	{"kube-system", "coredns-7d764666f9-qdcxt", ctl("ReplicaSet", "coredns-7d764666f9"), "coredns", "coredns", "deployment"},
	{"kube-system", "etcd-datagen-1-35", ctl("Node", "datagen-1-35"), "", "etcd-datagen-1-35", "staticpod"},
	{"kube-system", "kindnet-zkpn8", ctl("DaemonSet", "kindnet"), "", "kindnet", "daemonset"},
	{"kube-system", "kube-apiserver-datagen-1-35", ctl("Node", "datagen-1-35"), "", "kube-apiserver-datagen-1-35", "staticpod"},
	{"kube-system", "kube-controller-manager-datagen-1-35", ctl("Node", "datagen-1-35"), "", "kube-controller-manager-datagen-1-35", "staticpod"},
	{"kube-system", "kube-proxy-8k9zt", ctl("DaemonSet", "kube-proxy"), "", "kube-proxy", "daemonset"},
	{"kube-system", "kube-scheduler-datagen-1-35", ctl("Node", "datagen-1-35"), "", "kube-scheduler-datagen-1-35", "staticpod"},
	{"kube-system", "metrics-server-9d74bb658-c6nnt", ctl("ReplicaSet", "metrics-server-9d74bb658"), "metrics-server", "metrics-server", "deployment"},
	{"kube-system", "storage-provisioner", metav1.OwnerReference{}, "", "storage-provisioner", "barepod"},
	{"scraper", "e2e-container-creating", metav1.OwnerReference{}, "", "e2e-container-creating", "barepod"},
	{"scraper", "e2e-daemonset-kb65b", ctl("DaemonSet", "e2e-daemonset"), "", "e2e-daemonset", "daemonset"},
	{"scraper", "e2e-deployment-79967c5968-8bnn8", ctl("ReplicaSet", "e2e-deployment-79967c5968"), "e2e-deployment", "e2e-deployment", "deployment"},
	{"scraper", "e2e-deployment-79967c5968-zjslc", ctl("ReplicaSet", "e2e-deployment-79967c5968"), "e2e-deployment", "e2e-deployment", "deployment"},
	// A ReplicaSet nobody owns: the rule names the ReplicaSet.
	{"scraper", "e2e-hpa-6cd8d99884-tggnr", ctl("ReplicaSet", "e2e-hpa-6cd8d99884"), "", "e2e-hpa-6cd8d99884", "replicaset"},
	{"scraper", "e2e-kube-state-metrics-75b885dc9-97mtr", ctl("ReplicaSet", "e2e-kube-state-metrics-75b885dc9"), "e2e-kube-state-metrics", "e2e-kube-state-metrics", "deployment"},
	{"scraper", "e2e-scraper-5f97dc94d8-vkcjl", ctl("ReplicaSet", "e2e-scraper-5f97dc94d8"), "e2e-scraper", "e2e-scraper", "deployment"},
	{"scraper", "e2e-statefulset-0", ctl("StatefulSet", "e2e-statefulset"), "", "e2e-statefulset", "statefulset"},
	{"scraper", "e2e-statefulset-1", ctl("StatefulSet", "e2e-statefulset"), "", "e2e-statefulset", "statefulset"},
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// podBed is a static pod index holding the capture's pods on node (the
// test target's node, unless moved), each labelled app=NAME-app and
// team=pod-team.
type podBed struct {
	ix    *podindex.Index
	clock *testClock
}

func newPodBed(t testing.TB, node string) *podBed {
	t.Helper()
	clock := &testClock{now: scrapeTime}
	o := podindex.DefaultOptions()
	o.Labels = enrich.KeyMapper{Allow: map[string]struct{}{"app.kubernetes.io/name": {}, "team": {}}}
	o.Workload = true
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	o.Now = clock.Now
	cfg, err := o.Config()
	if err != nil {
		t.Fatal(err)
	}
	b := &podBed{ix: podindex.NewStatic(cfg), clock: clock}
	for _, p := range capturePods {
		if p.owner.Kind == "ReplicaSet" {
			var owners []metav1.OwnerReference
			if p.rsOwner != "" {
				owners = append(owners, ctl("Deployment", p.rsOwner))
			}
			b.ix.SetOwner("ReplicaSet", &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.owner.Name, OwnerReferences: owners}})
		}
		b.setPod(p, node, map[string]string{"app.kubernetes.io/name": p.name + "-app", "team": "pod-team", "ignored": "x"})
	}
	return b
}

func (b *podBed) setPod(p capturePod, node string, labels map[string]string) {
	var owners []metav1.OwnerReference
	if p.owner.Kind != "" {
		owners = append(owners, p.owner)
	}
	b.ix.SetPod(&v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: labels, OwnerReferences: owners},
		Spec:       v1.PodSpec{NodeName: node},
	})
}

func podCache(src PodSource, check NodeCheck, prec Precedence) *TargetCache {
	c := NewTargetCache(testTarget(), false)
	c.SetPods(PodConfig{Source: src, Check: check, Precedence: prec})
	return c
}

var podRe = regexp.MustCompile(`namespace="([^"]*)".*pod="([^"]*)"`)

// viewSeries returns every series of the view (self series left out) by
// the namespace/pod of its raw labels.
func viewSeries(t *testing.T, c *TargetCache, res *Result) map[string][]map[string]string {
	t.Helper()
	out := map[string][]map[string]string{}
	for i := range res.View.Samples {
		if isSelf(c, res.View.Ref(i)) {
			continue
		}
		var ts prompb.TimeSeries
		if err := ts.Unmarshal(res.View.Table.AppendEncoded(nil, res.View.Ref(i))); err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, l := range ts.Labels {
			m[l.Name] = l.Value
		}
		out[m["namespace"]+"/"+m["pod"]] = append(out[m["namespace"]+"/"+m["pod"]], m)
	}
	return out
}

func TestPodSeriesGetWorkloadAndPodLabels(t *testing.T) {
	body := readCapture(t, captures[0])
	for _, tc := range []struct {
		prec           Precedence
		team, conflict string // team and team_conflict1 on a pod series of kube-system
	}{
		{NamespaceFirst, "platform", "pod-team"},
		{PodFirst, "pod-team", "platform"},
	} {
		t.Run(tc.prec.String(), func(t *testing.T) {
			b := newPodBed(t, "node-a")
			c := podCache(b.ix, NodeCheckPlain, tc.prec)
			res := c.Process(body, "", scrapeTime, time.Second, testIndex(1, baseTeams), nil)
			if res.Err != nil || res.NotOnNode != 0 {
				t.Fatalf("err %v, not on node %d", res.Err, res.NotOnNode)
			}
			got := viewSeries(t, c, res)
			for _, p := range capturePods {
				ss := got[p.ns+"/"+p.name]
				if len(ss) == 0 {
					t.Fatalf("no series of %s/%s", p.ns, p.name)
				}
				for _, m := range ss {
					if m["workload"] != p.workload || m["workload_type"] != p.wt || m["app_kubernetes_io_name"] != p.name+"-app" || m["ignored"] != "" {
						t.Fatalf("%s/%s: series %v", p.ns, p.name, m)
					}
					wantTeam, wantConflict := tc.team, tc.conflict
					if p.ns == "scraper" { // scraper's team is observability
						if tc.prec == NamespaceFirst {
							wantTeam = "observability"
						} else {
							wantConflict = "observability"
						}
					}
					if m["team"] != wantTeam || m["team_conflict1"] != wantConflict {
						t.Fatalf("%s/%s precedence %s: team=%q team_conflict1=%q, want %q %q", p.ns, p.name, tc.prec, m["team"], m["team_conflict1"], wantTeam, wantConflict)
					}
				}
			}
			// Series without a pod keep namespace-only (or no) enrichment.
			for _, m := range got["/"] {
				if m["workload"] != "" || m["team"] != "" {
					t.Fatalf("node-level series enriched: %v", m)
				}
			}
		})
	}
}

// countStale returns the stale markers in send, by namespace/pod.
func countStaleByPod(res *Result) map[string]int {
	out := map[string]int{}
	for k, ss := range sentByName(res.Send) {
		for _, s := range ss {
			if value.IsStaleNaN(s.V) {
				if m := podRe.FindStringSubmatch(k); m != nil {
					out[m[1]+"/"+m[2]]++
				} else {
					out["?"]++
				}
			}
		}
	}
	return out
}

func TestPodRelabelGoesStaleAtOnceAndOnlyForThatPod(t *testing.T) {
	body := readCapture(t, captures[0])
	b := newPodBed(t, "node-a")
	c := podCache(b.ix, NodeCheckPlain, NamespaceFirst)
	ix := testIndex(1, baseTeams)
	first := c.Process(body, "", scrapeTime, time.Second, ix, nil)
	perPod := viewSeries(t, c, first)

	// Unchanged pods: nothing is rebuilt, nothing goes stale.
	now := scrapeTime.Add(30 * time.Second)
	b.clock.set(now)
	res := c.Process(body, "", now, time.Second, ix, nil)
	if n := len(countStaleByPod(res)); n != 0 || res.Stale != 0 {
		t.Fatalf("stale markers without any change: %v", countStaleByPod(res))
	}

	// A relabel of one pod and a new owner of another.
	p := capturePods[10] // e2e-daemonset-kb65b
	b.setPod(p, "node-a", map[string]string{"app.kubernetes.io/name": "renamed", "team": "pod-team"})
	q := capturePods[13] // e2e-hpa: its ReplicaSet is now owned by a Deployment
	b.ix.SetOwner("ReplicaSet", &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: q.ns, Name: q.owner.Name,
		OwnerReferences: []metav1.OwnerReference{ctl("Deployment", "e2e-hpa")}}})
	now = now.Add(30 * time.Second)
	b.clock.set(now)
	res = c.Process(body, "", now, time.Second, ix, nil)
	stale := countStaleByPod(res)
	want := map[string]int{p.ns + "/" + p.name: len(perPod[p.ns+"/"+p.name]), q.ns + "/" + q.name: len(perPod[q.ns+"/"+q.name])}
	if len(stale) != 2 || stale[p.ns+"/"+p.name] != want[p.ns+"/"+p.name] || stale[q.ns+"/"+q.name] != want[q.ns+"/"+q.name] {
		t.Fatalf("stale markers %v, want %v", stale, want)
	}
	got := viewSeries(t, c, res)
	for _, m := range got[p.ns+"/"+p.name] {
		if m["app_kubernetes_io_name"] != "renamed" {
			t.Fatalf("relabelled pod's series %v", m)
		}
	}
	for _, m := range got[q.ns+"/"+q.name] {
		if m["workload"] != "e2e-hpa" || m["workload_type"] != "deployment" {
			t.Fatalf("re-owned pod's series %v", m)
		}
	}
}

func TestPodNotOnNode(t *testing.T) {
	body := readCapture(t, captures[0])
	p := capturePods[11] // e2e-deployment-79967c5968-8bnn8
	key := p.ns + "/" + p.name
	for _, check := range []NodeCheck{NodeCheckPlain, NodeCheckDrop, NodeCheckOff} {
		t.Run(check.String(), func(t *testing.T) {
			b := newPodBed(t, "node-a")
			c := podCache(b.ix, check, NamespaceFirst)
			ix := testIndex(1, baseTeams)
			first := c.Process(body, "", scrapeTime, time.Second, ix, nil)
			n := len(viewSeries(t, c, first)[key])

			// The apiserver moves the pod to node-b; node-a still reports it.
			b.setPod(p, "node-b", map[string]string{"app.kubernetes.io/name": "x", "team": "pod-team"})
			now := scrapeTime.Add(30 * time.Second)
			b.clock.set(now)
			res := c.Process(body, "", now, time.Second, ix, nil)
			got := viewSeries(t, c, res)[key]
			stale := countStaleByPod(res)
			switch check {
			case NodeCheckOff:
				if res.NotOnNode != 0 || len(got) != n || got[0]["app_kubernetes_io_name"] != "x" {
					t.Fatalf("check off: not on node %d, %d series %v", res.NotOnNode, len(got), got[0])
				}
				return
			case NodeCheckPlain:
				if len(got) != n {
					t.Fatalf("plain: %d series, want %d", len(got), n)
				}
				for _, m := range got {
					for _, l := range []string{"team", "workload", "workload_type", "app_kubernetes_io_name", "team_conflict1"} {
						if m[l] != "" {
							t.Fatalf("plain series has %s: %v", l, m)
						}
					}
					if m["node"] != "node-a" || m["pod"] != p.name {
						t.Fatalf("plain series lost its own or target labels: %v", m)
					}
				}
			case NodeCheckDrop:
				if len(got) != 0 {
					t.Fatalf("drop: %d series in the view", len(got))
				}
			}
			if res.NotOnNode != n || res.FirstNotOnNode != key {
				t.Fatalf("not on node %d (%q), want %d (%q)", res.NotOnNode, res.FirstNotOnNode, n, key)
			}
			// The enriched series ended at once; no other pod's did.
			if len(stale) != 1 || stale[key] != n {
				t.Fatalf("stale markers %v, want %d for %s", stale, n, key)
			}

			// Back on node-a: enriched again, the plain series end.
			b.setPod(p, "node-a", map[string]string{"app.kubernetes.io/name": "x", "team": "pod-team"})
			now = now.Add(30 * time.Second)
			b.clock.set(now)
			res = c.Process(body, "", now, time.Second, ix, nil)
			got = viewSeries(t, c, res)[key]
			if res.NotOnNode != 0 || len(got) != n || got[0]["workload"] != p.workload {
				t.Fatalf("back on node: not on node %d, %d series %v", res.NotOnNode, len(got), got)
			}
			wantStale := map[string]int{key: n}
			if check == NodeCheckDrop {
				wantStale = map[string]int{} // dropped series were never sent
			}
			if stale := countStaleByPod(res); len(stale) != len(wantStale) || stale[key] != wantStale[key] {
				t.Fatalf("stale markers %v, want %v", stale, wantStale)
			}
		})
	}
}

// TestPodNotOnNodeGrace: a pod deleted moments ago (cAdvisor still reports
// its cgroup) is enriched as before until the deleted grace ends; a pod
// the index does not know is given the unknown grace after the sync.
func TestPodNotOnNodeGrace(t *testing.T) {
	body := readCapture(t, captures[0])
	b := newPodBed(t, "node-a")
	c := podCache(b.ix, NodeCheckPlain, NamespaceFirst)
	ix := testIndex(1, baseTeams)
	p := capturePods[16] // e2e-statefulset-0
	key := p.ns + "/" + p.name
	c.Process(body, "", scrapeTime, time.Second, ix, nil)

	// Deleted a second before the scrape: still enriched.
	b.clock.set(scrapeTime.Add(29 * time.Second))
	b.ix.DeletePod(p.ns, p.name)
	now := scrapeTime.Add(30 * time.Second)
	b.clock.set(now)
	res := c.Process(body, "", now, time.Second, ix, nil)
	got := viewSeries(t, c, res)[key]
	if res.NotOnNode != 0 || len(countStaleByPod(res)) != 0 || got[0]["workload"] != "e2e-statefulset" {
		t.Fatalf("within the deleted grace: not on node %d, stale %v, series %v", res.NotOnNode, countStaleByPod(res), got[0])
	}
	// Still within the grace at 4m59s after the delete.
	now = scrapeTime.Add(29*time.Second + podindex.DefaultDeletedGrace - time.Second)
	b.clock.set(now)
	if res = c.Process(body, "", now, time.Second, ix, nil); res.NotOnNode != 0 {
		t.Fatalf("just within the deleted grace: not on node %d", res.NotOnNode)
	}
	// Past it (and the unknown grace after the sync long over): plain.
	now = scrapeTime.Add(29*time.Second + podindex.DefaultDeletedGrace + time.Second)
	b.clock.set(now)
	b.ix.Sweep(now)
	res = c.Process(body, "", now, time.Second, ix, nil)
	if res.NotOnNode != len(got) || res.FirstNotOnNode != key {
		t.Fatalf("past the deleted grace: not on node %d (%s), want %d", res.NotOnNode, res.FirstNotOnNode, len(got))
	}
}

func TestUnknownPodWithinUnknownGrace(t *testing.T) {
	body := readCapture(t, captures[0])
	b := newPodBed(t, "node-a")
	p := capturePods[9] // e2e-container-creating: not in the index
	b.ix.DeletePod(p.ns, p.name)
	b.ix.Sweep(scrapeTime.Add(podindex.DefaultDeletedGrace + time.Second)) // tombstone gone
	c := podCache(b.ix, NodeCheckPlain, NamespaceFirst)
	ix := testIndex(1, baseTeams)
	// NewStatic's sync was at scrapeTime: within the unknown grace the
	// pod's series keep their namespace labels.
	res := c.Process(body, "", scrapeTime.Add(time.Second), time.Second, ix, nil)
	got := viewSeries(t, c, res)[p.ns+"/"+p.name]
	if res.NotOnNode != 0 || got[0]["team"] != "observability" || got[0]["workload"] != "" {
		t.Fatalf("within the unknown grace: not on node %d, series %v", res.NotOnNode, got[0])
	}
	now := scrapeTime.Add(podindex.DefaultUnknownGrace + time.Second)
	b.clock.set(now)
	res = c.Process(body, "", now, time.Second, ix, nil)
	if res.NotOnNode != len(got) {
		t.Fatalf("after the unknown grace: not on node %d, want %d", res.NotOnNode, len(got))
	}
}

// A plain target (kube-state-metrics, say) reports pods of every node: it
// is enriched but never checked.
func TestPlainTargetNotChecked(t *testing.T) {
	body := readCapture(t, captures[0])
	b := newPodBed(t, "node-b")
	tg := testTarget()
	tg.Node, tg.Key = "", "http://ksm/metrics"
	c := NewTargetCache(tg, false)
	c.SetPods(PodConfig{Source: b.ix, Check: NodeCheckDrop})
	res := c.Process(body, "", scrapeTime, time.Second, testIndex(1, baseTeams), nil)
	if res.NotOnNode != 0 {
		t.Fatalf("plain target checked: %d", res.NotOnNode)
	}
	if got := viewSeries(t, c, res)["kube-system/kindnet-zkpn8"]; got[0]["workload"] != "kindnet" {
		t.Fatalf("plain target not enriched: %v", got[0])
	}
}

func TestMergeLabels(t *testing.T) {
	for _, tc := range []struct {
		first, second, want []enrich.Label
	}{
		{nil, nil, nil},
		{labelsOf("team", "a"), nil, labelsOf("team", "a")},
		{nil, labelsOf("app", "x"), labelsOf("app", "x")},
		{labelsOf("team", "a"), labelsOf("app", "x", "team", "b"), labelsOf("app", "x", "team", "a", "team_conflict1", "b")},
		// A generated name never takes a name either set has.
		{labelsOf("team", "a", "team_conflict1", "c"), labelsOf("team", "b"), labelsOf("team", "a", "team_conflict1", "c", "team_conflict2", "b")},
		{labelsOf("team", "a"), labelsOf("team", "b", "team_conflict1", "d"), labelsOf("team", "a", "team_conflict1", "d", "team_conflict2", "b")},
	} {
		got := mergeLabels(nil, tc.first, tc.second)
		if len(got) != len(tc.want) {
			t.Fatalf("merge(%v, %v) = %v, want %v", tc.first, tc.second, got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("merge(%v, %v) = %v, want %v", tc.first, tc.second, got, tc.want)
			}
		}
	}
}

// Pods come and go: the scopes of evicted series are forgotten.
func TestScopesFollowEviction(t *testing.T) {
	body := readCapture(t, captures[0])
	b := newPodBed(t, "node-a")
	c := podCache(b.ix, NodeCheckPlain, NamespaceFirst)
	ix := testIndex(1, baseTeams)
	now := scrapeTime
	c.Process(body, "", now, time.Second, ix, nil)
	full := len(c.scopes.index)
	// Drop one pod's series from the payload for longer than evictAfter.
	var kept []string
	for _, l := range strings.SplitAfter(string(body), "\n") {
		if !strings.Contains(l, `pod="kindnet-zkpn8"`) {
			kept = append(kept, l)
		}
	}
	small := []byte(strings.Join(kept, ""))
	for i := 0; i < 2*evictAfter; i++ {
		now = now.Add(30 * time.Second)
		b.clock.set(now)
		c.Process(small, "", now, time.Second, ix, nil)
	}
	if len(c.scopes.index) != full-1 {
		t.Fatalf("%d scopes after eviction, want %d", len(c.scopes.index), full-1)
	}
}
