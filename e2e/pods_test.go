package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// podEnrichmentRoleFile is the shipped role of components/pod-enrichment.
const podEnrichmentRoleFile = "deploy/kustomize/components/pod-enrichment/clusterrole.yaml"

// mixinRuleGroup is the kubernetes-mixin group with namespace_workload_pod:kube_pod_owner:relabel.
const mixinRuleGroup = "k8s.rules.pod_owner"

type podRef struct{ ns, pod string }

var (
	nsRe  = regexp.MustCompile(`\bnamespace="([^"]*)"`)
	podRe = regexp.MustCompile(`\bpod="([^"]*)"`)
)

// servedPods returns the (namespace, pod) pairs a fake kubelet serves, sorted.
func servedPods(t *testing.T, b *bed.Bed, node string) []podRef {
	t.Helper()
	code, body, err := b.KubeletGet(t.Context(), node, "/metrics/cadvisor", b.AdminToken)
	if err != nil || code != 200 {
		t.Fatalf("GET %s /metrics/cadvisor: %d %v", node, code, err)
	}
	set := map[podRef]bool{}
	for _, l := range strings.Split(string(body), "\n") {
		ns, pod := nsRe.FindStringSubmatch(l), podRe.FindStringSubmatch(l)
		if ns != nil && pod != nil && ns[1] != "" && pod[1] != "" {
			set[podRef{ns[1], pod[1]}] = true
		}
	}
	var out []podRef
	for p := range set {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ns+"/"+out[i].pod < out[j].ns+"/"+out[j].pod })
	return out
}

// mixinRules returns kubernetes-mixin's pod owner rule group, verbatim from kube-prometheus's
// PrometheusRule (../shared/fixtures/kube-prometheus), as a Prometheus rules file.
func mixinRules(t *testing.T) string {
	t.Helper()
	root, err := bed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "..", "shared", "fixtures", "kube-prometheus", "kubernetesControlPlane-prometheusRule.yaml")
	if _, err := os.Stat(file); err != nil {
		t.Skipf("kube-prometheus fixture: %v", err)
	}
	groups, err := promRuleGroups(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if g["name"] == mixinRuleGroup {
			out, err := yaml.Marshal(map[string]any{"groups": []any{g}})
			if err != nil {
				t.Fatal(err)
			}
			return string(out)
		}
	}
	t.Fatalf("%s: no group %s", file, mixinRuleGroup)
	return ""
}

// podCase is the owner chain the test gives one served pod, and what the relay must add.
type podCase struct {
	podRef
	kind         string // owner chain, see ownerKinds
	workload, wt string
}

// ownerKinds are the chains the test spreads over the served pods: every workload_type the
// recording rule knows, and other kinds verbatim.
var ownerKinds = []string{"deployment", "replicaset", "daemonset", "statefulset", "job", "cronjob", "barepod", "staticpod", "rollout", "replicationcontroller"}

type objects struct {
	t     *testing.T
	b     *bed.Bed
	ctx   context.Context
	nsSAs map[string]bool
	uids  int
}

func (o *objects) ensureSA(ns string) {
	if o.nsSAs[ns] {
		return
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
	if _, err := o.b.Client.CoreV1().ServiceAccounts(ns).Create(o.ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		o.t.Fatal(err)
	}
	o.nsSAs[ns] = true
}

func ctlRef(apiVersion, kind, name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: new(true)}
}

func podTemplate(app string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, AutomountServiceAccountToken: new(false),
			Containers: []corev1.Container{{Name: "c", Image: "example.invalid/none"}}},
	}
}

// create makes the owner chain of c in the apiserver (no controller manager runs: the
// owner references are the test's) and returns the pod's owner references.
func (o *objects) create(c *podCase, node *corev1.Node) []metav1.OwnerReference {
	cs, ctx, ns := o.b.Client, o.ctx, c.ns
	base := "w-" + strings.ReplaceAll(c.pod, ".", "-")
	check := func(err error) {
		o.t.Helper()
		if err != nil {
			o.t.Fatalf("%s %s/%s: %v", c.kind, ns, c.pod, err)
		}
	}
	// Owners that are not created (no controller manager runs: nothing checks them).
	fake := func(string) types.UID {
		o.uids++
		return types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", o.uids))
	}
	mark := metav1.ObjectMeta{Namespace: ns, Labels: map[string]string{"e2e-pods": "1"}}
	meta := func(name string, owner []metav1.OwnerReference) metav1.ObjectMeta {
		m := mark
		m.Name, m.OwnerReferences = name, owner
		return m
	}
	newRS := func(name string, owner []metav1.OwnerReference) metav1.OwnerReference {
		tpl := podTemplate(name)
		rs := &appsv1.ReplicaSet{ObjectMeta: meta(name, owner),
			Spec: appsv1.ReplicaSetSpec{Replicas: new(int32), Selector: &metav1.LabelSelector{MatchLabels: tpl.Labels}, Template: tpl}}
		rs.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways
		got, err := cs.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{})
		check(err)
		return ctlRef("apps/v1", "ReplicaSet", name, got.UID)
	}
	newJob := func(name string, owner []metav1.OwnerReference) metav1.OwnerReference {
		j := &batchv1.Job{ObjectMeta: meta(name, owner),
			Spec: batchv1.JobSpec{Suspend: new(true), Template: podTemplate(name)}}
		got, err := cs.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{})
		check(err)
		return ctlRef("batch/v1", "Job", name, got.UID)
	}
	switch c.kind {
	case "deployment":
		tpl := podTemplate(base)
		tpl.Spec.RestartPolicy = corev1.RestartPolicyAlways
		d := &appsv1.Deployment{ObjectMeta: meta(base, nil),
			Spec: appsv1.DeploymentSpec{Replicas: new(int32), Paused: true, Selector: &metav1.LabelSelector{MatchLabels: tpl.Labels}, Template: tpl}}
		got, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
		check(err)
		c.workload, c.wt = base, "deployment"
		return []metav1.OwnerReference{newRS(base+"-5d9f8b6c7", []metav1.OwnerReference{ctlRef("apps/v1", "Deployment", base, got.UID)})}
	case "replicaset":
		c.workload, c.wt = base+"-7c4b9", "replicaset"
		return []metav1.OwnerReference{newRS(base+"-7c4b9", nil)}
	case "rollout": // a ReplicaSet of another controller: its kind verbatim
		c.workload, c.wt = base, "Rollout"
		return []metav1.OwnerReference{newRS(base+"-6f7d8", []metav1.OwnerReference{ctlRef("argoproj.io/v1alpha1", "Rollout", base, fake(base))})}
	case "daemonset":
		c.workload, c.wt = base, "daemonset"
		return []metav1.OwnerReference{ctlRef("apps/v1", "DaemonSet", base, fake(base))}
	case "statefulset":
		c.workload, c.wt = base, "statefulset"
		return []metav1.OwnerReference{ctlRef("apps/v1", "StatefulSet", base, fake(base))}
	case "job":
		c.workload, c.wt = base, "job"
		return []metav1.OwnerReference{newJob(base, nil)}
	case "cronjob":
		cj := &batchv1.CronJob{ObjectMeta: meta(base, nil),
			Spec: batchv1.CronJobSpec{Schedule: "0 0 1 1 *", Suspend: new(true), JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: podTemplate(base)}}}}
		got, err := cs.BatchV1().CronJobs(ns).Create(ctx, cj, metav1.CreateOptions{})
		check(err)
		c.workload, c.wt = base, "CronJob"
		return []metav1.OwnerReference{newJob(base+"-29000000", []metav1.OwnerReference{ctlRef("batch/v1", "CronJob", base, got.UID)})}
	case "staticpod":
		c.workload, c.wt = c.pod, "staticpod"
		return []metav1.OwnerReference{ctlRef("v1", "Node", node.Name, node.UID)}
	case "replicationcontroller":
		c.workload, c.wt = base, "ReplicationController"
		return []metav1.OwnerReference{ctlRef("v1", "ReplicationController", base, fake(base))}
	default: // barepod
		c.workload, c.wt = c.pod, "barepod"
		return nil
	}
}

func (o *objects) createPod(p podRef, node string, labels map[string]string, owners []metav1.OwnerReference) {
	o.ensureSA(p.ns)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.pod, Namespace: p.ns, Labels: labels, OwnerReferences: owners},
		Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: new(false),
			Containers: []corev1.Container{{Name: "c", Image: "example.invalid/none"}}},
	}
	if _, err := o.b.Client.CoreV1().Pods(p.ns).Create(o.ctx, pod, metav1.CreateOptions{}); err != nil {
		o.t.Fatalf("pod %s/%s: %v", p.ns, p.pod, err)
	}
}

// cleanupPodObjects deletes every pod, ReplicaSet, Deployment, Job and CronJob the test made.
func cleanupPodObjects(b *bed.Bed, namespaces []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	zero := int64(0)
	opts := metav1.DeleteOptions{GracePeriodSeconds: &zero}
	sel := metav1.ListOptions{LabelSelector: "e2e-pods=1"}
	for _, ns := range namespaces {
		_ = b.Client.CoreV1().Pods(ns).DeleteCollection(ctx, opts, sel)
		_ = b.Client.AppsV1().ReplicaSets(ns).DeleteCollection(ctx, opts, sel)
		_ = b.Client.AppsV1().Deployments(ns).DeleteCollection(ctx, opts, sel)
		_ = b.Client.BatchV1().Jobs(ns).DeleteCollection(ctx, opts, sel)
		_ = b.Client.BatchV1().CronJobs(ns).DeleteCollection(ctx, opts, sel)
	}
}

// TestPodEnrichmentMatchesMixin: the pods node-1's kubelet reports are created in the
// apiserver with every kind of owner chain; the relay (--pod-labels, --workload-labels,
// the pod-on-node check's default plain) must give each pod series the workload and
// workload_type that kubernetes-mixin's namespace_workload_pod:kube_pod_owner:relabel computes
// from kube-state-metrics over the same objects, in the same Prometheus, and the pod's
// allowlisted labels. A pod node-2 reports but the apiserver places on node-3 gets plain
// series, counted for node-2 and logged; a pod deleted a second ago stays enriched.
func TestPodEnrichmentMatchesMixin(t *testing.T) {
	b := needBed(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	rules := mixinRules(t)
	needKSMBinary(t, ctx)

	// The relay's role: apiserver mode's plus the pod-enrichment component's.
	base, err := bed.ModeRules("apiserver")
	if err != nil {
		t.Fatal(err)
	}
	podRole, err := bed.ShippedClusterRole(podEnrichmentRoleFile)
	if err != nil {
		t.Fatal(err)
	}
	kubeletRules, err := bed.ModeRules("kubelet")
	if err != nil {
		t.Fatal(err)
	}
	// Both modes' rules: a kubelet-mode relay runs too, below.
	roleRules := append(append(base[:len(base):len(base)], kubeletRules...), podRole.Rules...)
	if err := b.SetRelayRules(ctx, roleRules); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.SetRelayRules(context.Background(), base) })

	node1, err := b.Client.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	served1 := servedPods(t, b, "node-1")
	if len(served1) < len(ownerKinds) {
		t.Fatalf("node-1 serves %d pods, want at least %d", len(served1), len(ownerKinds))
	}
	o := &objects{t: t, b: b, ctx: ctx, nsSAs: map[string]bool{}}
	t.Cleanup(func() { cleanupPodObjects(b, b.Namespaces) })
	want := map[podRef]*podCase{}
	for i, p := range served1 {
		c := &podCase{podRef: p, kind: ownerKinds[i%len(ownerKinds)]}
		owners := o.create(c, node1)
		labels := map[string]string{"e2e-pods": "1", "app": "app-" + c.kind, "tier": []string{"web", "batch"}[i%2], "team": "pod-team", "not-listed": "x"}
		o.createPod(p, "node-1", labels, owners)
		want[p] = c
	}
	// A pod node-2 reports that the apiserver runs on node-3.
	var stray podRef
	for _, p := range servedPods(t, b, "node-2") {
		if want[p] == nil {
			stray = p
			break
		}
	}
	if stray.pod == "" {
		t.Fatal("node-2 serves no pod node-1 does not")
	}
	o.createPod(stray, "node-3", map[string]string{"e2e-pods": "1", "app": "stray"}, nil)

	k, err := b.StartKubeStateMetrics(ctx, "--resources=pods,replicasets,jobs", "--metric-labels-allowlist=pods=[app,tier]")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Stop()
	prom, err := b.StartPrometheus2(ctx, bed.PromOptions{Name: "prometheus-pods", RemoteWriteReceiver: true, RuleFiles: map[string]string{"pod_owner.yaml": rules},
		Config: "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n" + k.ScrapeJob()})
	if err != nil {
		t.Fatal(err)
	}
	defer prom.Stop()

	_, r, sel := startRelay(t, "--remote-write-url", prom.RemoteWriteURL,
		"--pod-labels", "app,tier,team", "--workload-labels")

	// The recording rule over kube-state-metrics: one row per pod of node-1.
	q := `namespace_workload_pod:kube_pod_owner:relabel`
	mixin, err := prom.WaitQuery(ctx, q, 2*time.Minute, func(s []bed.Sample) bool { return countServed(s, want) == len(want) })
	if err != nil {
		t.Fatalf("%s: %v\n%s", q, err, k.Logs(20))
	}
	// The relay's series of node-1's pods, grouped by what it added.
	rq := fmt.Sprintf(`count by (namespace, pod, workload, workload_type, app, tier, team, team_conflict1, not_listed) ({%s, node="node-1", pod!="", __name__=~"container_.*"})`, sel)
	relay, err := prom.WaitQuery(ctx, rq, 2*time.Minute, func(s []bed.Sample) bool {
		n := 0
		for _, x := range s {
			if x.Metric["workload"] != "" {
				n++
			}
		}
		return n >= len(want)
	})
	if err != nil {
		t.Fatalf("%s: %v\n%s", rq, err, r.Logs(40))
	}
	// Every series of every pod, one label set per pod (a series without workload would be
	// a second row).
	byPod := map[podRef][]map[string]string{}
	for _, s := range relay {
		p := podRef{s.Metric["namespace"], s.Metric["pod"]}
		byPod[p] = append(byPod[p], s.Metric)
	}
	mixinOf := map[podRef]map[string]string{}
	for _, s := range mixin {
		p := podRef{s.Metric["namespace"], s.Metric["pod"]}
		if want[p] != nil {
			if mixinOf[p] != nil {
				t.Errorf("mixin: two rows for %v: %v and %v", p, mixinOf[p], s.Metric)
			}
			mixinOf[p] = s.Metric
		}
	}
	for p, c := range want {
		rows, m := byPod[p], mixinOf[p]
		if len(rows) != 1 {
			t.Errorf("%s/%s: relay series fall into %d label sets, want 1: %v", p.ns, p.pod, len(rows), rows)
			continue
		}
		got := rows[0]
		if m == nil || got["workload"] != m["workload"] || got["workload_type"] != m["workload_type"] {
			t.Errorf("%s/%s (%s): relay workload=%q workload_type=%q, mixin %v", p.ns, p.pod, c.kind, got["workload"], got["workload_type"], m)
		}
		if got["workload"] != c.workload || got["workload_type"] != c.wt {
			t.Errorf("%s/%s (%s): relay workload=%q workload_type=%q, want %q %q", p.ns, p.pod, c.kind, got["workload"], got["workload_type"], c.workload, c.wt)
		}
		// Allowlisted labels only; the namespace keeps team (--label-precedence=namespace),
		// the pod's team becomes team_conflict1 where the namespace has one.
		if got["app"] != "app-"+c.kind || got["tier"] == "" || got["not_listed"] != "" {
			t.Errorf("%s/%s: pod labels %v", p.ns, p.pod, got)
		}
		if nsTeam := teamOf(p.ns); nsTeam != "" {
			if got["team"] != nsTeam || got["team_conflict1"] != "pod-team" {
				t.Errorf("%s/%s: team=%q team_conflict1=%q, want %q and pod-team", p.ns, p.pod, got["team"], got["team_conflict1"], nsTeam)
			}
		} else if got["team"] != "pod-team" || got["team_conflict1"] != "" {
			t.Errorf("%s/%s: team=%q team_conflict1=%q, want pod-team and none", p.ns, p.pod, got["team"], got["team_conflict1"])
		}
	}
	// The same pod labels as kube-state-metrics' kube_pod_labels.
	kl, err := prom.Query(ctx, `kube_pod_labels`)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range kl {
		p := podRef{s.Metric["namespace"], s.Metric["pod"]}
		if rows := byPod[p]; want[p] != nil && len(rows) == 1 && (rows[0]["app"] != s.Metric["label_app"] || rows[0]["tier"] != s.Metric["label_tier"]) {
			t.Errorf("%s/%s: relay app=%q tier=%q, kube_pod_labels %v", p.ns, p.pod, rows[0]["app"], rows[0]["tier"], s.Metric)
		}
	}
	if !t.Failed() {
		t.Logf("%d pods of node-1: relay and %s agree", len(want), q)
	}

	// node-2 reports stray, which the apiserver runs on node-3: plain, counted, logged.
	self := func() string {
		_, body, err := r.Get(ctx, "/metrics/self")
		if err != nil {
			t.Fatal(err)
		}
		return string(body)
	}
	countRe := regexp.MustCompile(`kubelet_meta_proxy_pod_not_on_node_samples_total\{action="plain",node="node-2"\} (\S+)`)
	if m := countRe.FindStringSubmatch(self()); m == nil || m[1] == "0" {
		t.Errorf("no not-on-node count for node-2 in /metrics/self")
	}
	_, view, err := r.Get(ctx, "/metrics?node=node-2")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(view), "\n") {
		if strings.Contains(l, fmt.Sprintf(`namespace=%q`, stray.ns)) && strings.Contains(l, fmt.Sprintf(`pod=%q`, stray.pod)) {
			n++
			if strings.Contains(l, "team=") || strings.Contains(l, "workload=") || strings.Contains(l, "app=") {
				t.Fatalf("stray pod's series enriched: %s", l)
			}
		}
	}
	if n == 0 {
		t.Fatalf("no series of %s/%s on node-2", stray.ns, stray.pod)
	}
	if logs := r.Logs(400); !strings.Contains(logs, "does not place on its node") || !strings.Contains(logs, "node=node-2") {
		t.Errorf("no not-on-node log for node-2:\n%s", r.Logs(40))
	}

	// --pod-node-check=drop: the stray pod's series are not served nor sent, and counted.
	_, dr, _ := startRelay(t, "--remote-write-url", prom.RemoteWriteURL, "--workload-labels", "--pod-node-check=drop",
		"--external-label", "e2e_mode=drop")
	dropRe := regexp.MustCompile(`kubelet_meta_proxy_pod_not_on_node_samples_total\{action="drop",node="node-2"\} (\S+)`)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		_, body, err := dr.Get(ctx, "/metrics/self")
		if err != nil {
			t.Fatal(err)
		}
		if m := dropRe.FindSubmatch(body); m != nil && string(m[1]) != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drop: no count for node-2:\n%s", dr.Logs(40))
		}
	}
	_, dview, err := dr.Get(ctx, "/metrics?node=node-2")
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for _, l := range strings.Split(string(dview), "\n") {
		if strings.Contains(l, fmt.Sprintf(`pod=%q`, stray.pod)) && strings.Contains(l, fmt.Sprintf(`namespace=%q`, stray.ns)) {
			t.Fatalf("drop: the stray pod's series is served: %s", l)
		}
		if strings.HasPrefix(l, "container_") {
			kept++
		}
	}
	if kept == 0 {
		t.Fatal("drop: node-2 serves no container series at all")
	}
	dr.Stop()

	// Kubelet mode (the DaemonSet): the index holds only its node's pods (field selector
	// spec.nodeName), and the node's series get the same labels.
	_, kr, ksel := startRelay(t, append(b.KubeletModeArgs("node-1"), "--remote-write-url", prom.RemoteWriteURL,
		"--pod-labels", "app,tier,team", "--workload-labels", "--external-label", "e2e_mode=kubelet")...)
	podsRe := regexp.MustCompile(`(?m)^kubelet_meta_proxy_pods (\S+)$`)
	deadline := time.Now().Add(time.Minute)
	for {
		_, body, err := kr.Get(ctx, "/metrics/self")
		if err != nil {
			t.Fatal(err)
		}
		if m := podsRe.FindSubmatch(body); m != nil && string(m[1]) == fmt.Sprint(len(want)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubelet mode: kubelet_meta_proxy_pods is not %d (node-1's pods only): %s", len(want), podsRe.Find(body))
		}
		time.Sleep(time.Second)
	}
	kq := fmt.Sprintf(`count by (namespace, pod, workload, workload_type) ({%s, e2e_mode="kubelet", pod!="", __name__=~"container_.*"})`, ksel)
	krows, err := prom.WaitQuery(ctx, kq, time.Minute, func(s []bed.Sample) bool { return countServed(s, want) >= len(want) })
	if err != nil {
		t.Fatalf("%s: %v\n%s", kq, err, kr.Logs(40))
	}
	for _, s := range krows {
		p := podRef{s.Metric["namespace"], s.Metric["pod"]}
		if c := want[p]; c == nil || s.Metric["workload"] != c.workload || s.Metric["workload_type"] != c.wt {
			t.Errorf("kubelet mode: %v, want %+v", s.Metric, c)
		}
	}

	// A pod relabelled: its old series end at once (stale markers), not 5 minutes later.
	var relabelled podRef
	for p, c := range want {
		if c.kind == "statefulset" {
			relabelled = p
			break
		}
	}
	patch := []byte(`{"metadata":{"labels":{"app":"relabelled"}}}`)
	if _, err := b.Client.CoreV1().Pods(relabelled.ns).Patch(ctx, relabelled.pod, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf(`count({%s, namespace=%q, pod=%q, app="app-statefulset"})`, sel, relabelled.ns, relabelled.pod)
	if _, err := prom.WaitQuery(ctx, old, 30*time.Second, func(s []bed.Sample) bool { return len(s) == 0 }); err != nil {
		t.Errorf("old series of the relabelled pod still there: %v", err)
	}
	if _, err := prom.WaitQuery(ctx, fmt.Sprintf(`count({%s, namespace=%q, pod=%q, app="relabelled", workload_type="statefulset"})`, sel, relabelled.ns, relabelled.pod), 30*time.Second, bed.NonEmpty); err != nil {
		t.Errorf("relabelled pod's new series: %v", err)
	}

	// Deleted a second ago: still enriched (deleted grace 5m).
	var gone podRef
	for p, c := range want {
		if c.kind == "deployment" {
			gone = p
			break
		}
	}
	zero := int64(0)
	if err := b.Client.CoreV1().Pods(gone.ns).Delete(ctx, gone.pod, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	time.Sleep(time.Second)
	for time.Since(deleted) < 3*interval { // scrapes after the delete
		time.Sleep(interval)
	}
	_, view, err = r.Get(ctx, "/metrics?node=node-1")
	if err != nil {
		t.Fatal(err)
	}
	n = 0
	for _, l := range strings.Split(string(view), "\n") {
		if strings.Contains(l, fmt.Sprintf(`namespace=%q`, gone.ns)) && strings.Contains(l, fmt.Sprintf(`pod=%q`, gone.pod)) {
			n++
			if !strings.Contains(l, fmt.Sprintf(`workload=%q`, want[gone].workload)) {
				t.Fatalf("pod deleted %v ago lost its workload: %s", time.Since(deleted).Round(time.Second), l)
			}
		}
	}
	if n == 0 {
		t.Fatalf("no series of the deleted pod %s/%s", gone.ns, gone.pod)
	}
	if m := regexp.MustCompile(`kubelet_meta_proxy_pod_not_on_node_samples_total\{action="plain",node="node-1"\} (\S+)`).FindStringSubmatch(self()); m != nil && m[1] != "0" {
		t.Errorf("node-1 counted %s samples off their node; its pods are all on it (or deleted within the grace)", m[1])
	}
}

func countServed(s []bed.Sample, want map[podRef]*podCase) int {
	n := 0
	for _, x := range s {
		if want[podRef{x.Metric["namespace"], x.Metric["pod"]}] != nil {
			n++
		}
	}
	return n
}
