package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// kube-prometheus's manifests (testdata/kube-prometheus, copied byte for byte).
const kpDir = "testdata/kube-prometheus"

var kpRuleFiles = []string{"kubernetesControlPlane-prometheusRule.yaml", "kubePrometheus-prometheusRule.yaml", "kubeStateMetrics-prometheusRule.yaml"}

// parityInterval replaces kube-prometheus's 30s scrape and rule intervals on both sides, so
// that the test takes a minute or two; nothing else of the configuration changes.
const parityInterval = "5s"

type ruleGroup struct {
	Name  string           `json:"name"`
	Rules []map[string]any `json:"rules"`
}

// promRuleGroups reads a PrometheusRule manifest and returns its spec's rule groups.
func promRuleGroups(file string) ([]map[string]any, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var pr struct {
		Spec struct {
			Groups []map[string]any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &pr); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return pr.Spec.Groups, nil
}

// kpRules returns kube-prometheus's PrometheusRules as rule files (their spec, groups' own
// intervals removed so every group runs at the parity interval) and the groups.
func kpRules(t *testing.T) (map[string]string, []ruleGroup) {
	files := map[string]string{}
	var all []ruleGroup
	for _, f := range kpRuleFiles {
		groups, err := promRuleGroups(filepath.Join(kpDir, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range groups {
			delete(g, "interval")
			gb, _ := yaml.Marshal(g)
			var rg ruleGroup
			if err := yaml.Unmarshal(gb, &rg); err != nil {
				t.Fatal(err)
			}
			all = append(all, rg)
		}
		out, err := yaml.Marshal(map[string]any{"groups": groups})
		if err != nil {
			t.Fatal(err)
		}
		files[f] = string(out)
	}
	return files, all
}

// kpKubeletScrapeConfigs turns kube-prometheus's kubelet ServiceMonitor into the scrape
// configs prometheus-operator generates for it (role endpoints in kube-system, the
// operator's relabelings for Service "kubelet" and port "https-metrics", the endpoint's own
// relabelings and metricRelabelings, honor_labels, honor_timestamps), for the endpoints in
// paths. Debian's Prometheus is built without kubernetes_sd_configs, so the targets are what
// role endpoints discovers for the Service kube-system/kubelet the operator maintains (one
// address per node, targetRef the Node), as static targets with the same __meta_kubernetes_*
// labels; the operator's relabelings then run unchanged. token is the kubelets' bearer token.
func kpKubeletScrapeConfigs(t *testing.T, nodes []*bed.Node, tokenFile string, paths map[string]bool) string {
	b, err := os.ReadFile(filepath.Join(kpDir, "kubernetesControlPlane-serviceMonitorKubelet.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var sm struct {
		Metadata struct{ Name, Namespace string } `json:"metadata"`
		Spec     struct {
			JobLabel  string `json:"jobLabel"`
			Endpoints []struct {
				Path              string           `json:"path"`
				Port              string           `json:"port"`
				Scheme            string           `json:"scheme"`
				HonorLabels       bool             `json:"honorLabels"`
				HonorTimestamps   *bool            `json:"honorTimestamps"`
				Relabelings       []map[string]any `json:"relabelings"`
				MetricRelabelings []map[string]any `json:"metricRelabelings"`
				TLSConfig         struct {
					InsecureSkipVerify bool `json:"insecureSkipVerify"`
				} `json:"tlsConfig"`
			} `json:"endpoints"`
			NamespaceSelector struct {
				MatchNames []string `json:"matchNames"`
			} `json:"namespaceSelector"`
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &sm); err != nil {
		t.Fatal(err)
	}
	promRelabel := func(in []map[string]any) []map[string]any {
		var out []map[string]any
		for _, r := range in {
			m := map[string]any{}
			for k, v := range r {
				switch k {
				case "sourceLabels":
					k = "source_labels"
				case "targetLabel":
					k = "target_label"
				}
				m[k] = v
			}
			out = append(out, m)
		}
		return out
	}
	sanitize := func(s string) string { return strings.NewReplacer(".", "_", "/", "_", "-", "_").Replace(s) }
	var sdTargets []map[string]any
	for _, n := range nodes {
		ls := map[string]string{
			"__meta_kubernetes_namespace":                    sm.Spec.NamespaceSelector.MatchNames[0],
			"__meta_kubernetes_service_name":                 "kubelet",
			"__meta_kubernetes_endpoint_port_name":           "https-metrics",
			"__meta_kubernetes_endpoint_address_target_kind": "Node",
			"__meta_kubernetes_endpoint_address_target_name": n.Name,
			"__meta_kubernetes_endpoint_ready":               "true",
			"__meta_kubernetes_service_label_k8s_app":        "kubelet",
			"__meta_kubernetes_service_labelpresent_k8s_app": "true",
		}
		for k, v := range sm.Spec.Selector.MatchLabels {
			ls["__meta_kubernetes_service_label_"+sanitize(k)] = v
			ls["__meta_kubernetes_service_labelpresent_"+sanitize(k)] = "true"
		}
		sdTargets = append(sdTargets, map[string]any{"targets": []string{fmt.Sprintf("%s:%d", n.IP, n.Port)}, "labels": ls})
	}

	var cfgs []map[string]any
	for i, ep := range sm.Spec.Endpoints {
		path := ep.Path
		if path == "" {
			path = "/metrics"
		}
		if !paths[path] {
			continue
		}
		rl := []map[string]any{{"source_labels": []string{"job"}, "target_label": "__tmp_prometheus_job_name"}}
		for k, v := range sm.Spec.Selector.MatchLabels {
			rl = append(rl, map[string]any{"action": "keep",
				"source_labels": []string{"__meta_kubernetes_service_label_" + sanitize(k), "__meta_kubernetes_service_labelpresent_" + sanitize(k)},
				"regex":         "(" + v + ");true"})
		}
		rl = append(rl,
			map[string]any{"action": "keep", "source_labels": []string{"__meta_kubernetes_endpoint_port_name"}, "regex": ep.Port},
			map[string]any{"source_labels": []string{"__meta_kubernetes_endpoint_address_target_kind", "__meta_kubernetes_endpoint_address_target_name"},
				"separator": ";", "regex": "Node;(.*)", "replacement": "${1}", "target_label": "node"},
			map[string]any{"source_labels": []string{"__meta_kubernetes_endpoint_address_target_kind", "__meta_kubernetes_endpoint_address_target_name"},
				"separator": ";", "regex": "Pod;(.*)", "replacement": "${1}", "target_label": "pod"},
			map[string]any{"source_labels": []string{"__meta_kubernetes_namespace"}, "target_label": "namespace"},
			map[string]any{"source_labels": []string{"__meta_kubernetes_service_name"}, "target_label": "service"},
			map[string]any{"source_labels": []string{"__meta_kubernetes_pod_name"}, "target_label": "pod"},
			map[string]any{"source_labels": []string{"__meta_kubernetes_pod_container_name"}, "target_label": "container"},
			map[string]any{"action": "drop", "source_labels": []string{"__meta_kubernetes_pod_phase"}, "regex": "(Failed|Succeeded)"},
			map[string]any{"source_labels": []string{"__meta_kubernetes_service_name"}, "target_label": "job", "replacement": "${1}"},
			map[string]any{"source_labels": []string{"__meta_kubernetes_service_label_" + sanitize(sm.Spec.JobLabel)}, "target_label": "job", "regex": "(.+)", "replacement": "${1}"},
			map[string]any{"target_label": "endpoint", "replacement": ep.Port},
		)
		rl = append(rl, promRelabel(ep.Relabelings)...)
		honorTS := true
		if ep.HonorTimestamps != nil {
			honorTS = *ep.HonorTimestamps
		}
		c := map[string]any{
			"job_name":         fmt.Sprintf("serviceMonitor/%s/%s/%d", sm.Metadata.Namespace, sm.Metadata.Name, i),
			"honor_labels":     ep.HonorLabels,
			"honor_timestamps": honorTS,
			"scrape_interval":  parityInterval,
			"metrics_path":     path,
			"scheme":           ep.Scheme,
			"tls_config":       map[string]any{"insecure_skip_verify": ep.TLSConfig.InsecureSkipVerify},
			"authorization":    map[string]any{"type": "Bearer", "credentials_file": tokenFile},
			"static_configs":   sdTargets,
			"relabel_configs":  rl,
		}
		if len(ep.MetricRelabelings) > 0 {
			c["metric_relabel_configs"] = promRelabel(ep.MetricRelabelings)
		}
		cfgs = append(cfgs, c)
	}
	out, err := yaml.Marshal(map[string]any{"scrape_configs": cfgs})
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// parityPods creates a Running Pod for every (namespace, pod) the fake kubelets' cAdvisor
// series name, on the node that serves them, with its containers and images, so that
// kube-state-metrics gives kube_pod_info and friends for them. It returns a cleanup.
func parityPods(ctx context.Context, t *testing.T, b *bed.Bed) func() {
	type podKey struct{ ns, pod string }
	var created []podKey
	var createdNS []string
	no := false
	for _, n := range b.Nodes() {
		code, body, err := b.KubeletGet(ctx, n.Name, "/metrics/cadvisor", b.AdminToken)
		if err != nil || code != 200 {
			t.Fatalf("%s /metrics/cadvisor: %d %v", n.Name, code, err)
		}
		pods := map[podKey]map[string]string{}
		for _, l := range parseText(t, body)["container_memory_working_set_bytes"] {
			if l["namespace"] == "" || l["pod"] == "" {
				continue
			}
			k := podKey{l["namespace"], l["pod"]}
			if pods[k] == nil {
				pods[k] = map[string]string{}
			}
			if l["container"] != "" && l["image"] != "" {
				pods[k][l["container"]] = l["image"]
			}
		}
		for k, containers := range pods {
			if _, err := b.Client.CoreV1().Namespaces().Get(ctx, k.ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				if _, err := b.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: k.ns}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				createdNS = append(createdNS, k.ns)
			}
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: k.ns}}
			if _, err := b.Client.CoreV1().ServiceAccounts(k.ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: k.pod, Namespace: k.ns},
				Spec: corev1.PodSpec{NodeName: n.Name, AutomountServiceAccountToken: &no}}
			names := make([]string, 0, len(containers))
			for c := range containers {
				names = append(names, c)
			}
			sort.Strings(names)
			for _, c := range names {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: containers[c]})
			}
			if len(names) == 0 { // a pod whose only cgroup is its sandbox
				p.Spec.Containers = []corev1.Container{{Name: "pause", Image: "registry.k8s.io/pause:3.10"}}
			}
			got, err := b.Client.CoreV1().Pods(k.ns).Create(ctx, p, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue // the same pod name served by another node: the first one wins, on both sides
			}
			if err != nil {
				t.Fatal(err)
			}
			created = append(created, k)
			now := metav1.Now()
			got.Status = corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &now, HostIP: n.IP, PodIP: n.IP,
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
			for _, c := range got.Spec.Containers {
				got.Status.ContainerStatuses = append(got.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image, Ready: true,
					State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}})
			}
			if _, err := b.Client.CoreV1().Pods(k.ns).UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("created %d pods for the fake kubelets' series", len(created))
	return func() {
		zero := int64(0)
		for _, k := range created {
			_ = b.Client.CoreV1().Pods(k.ns).Delete(context.Background(), k.pod, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		}
		for _, ns := range createdNS {
			_ = b.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	}
}

// seriesKey is a series' labels as a string, without team (the relay's addition) and without
// namespace="kube-system" (kube-prometheus's target label, which honor_labels puts on kubelet
// series that have no namespace; the relay leaves them without). le and quantile values are
// compared as numbers: the relay parses as Prometheus 3 does, which writes them as floats
// ("1" is "1.0"), the bed's Prometheus 2.42 keeps them as written.
func seriesKey(m map[string]string) string {
	var ks []string
	for k, v := range m {
		if k == "team" || (k == "namespace" && v == "kube-system") {
			continue
		}
		if k == "le" || k == "quantile" {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				v = strconv.FormatFloat(f, 'g', -1, 64)
			}
		}
		ks = append(ks, k+"="+v)
	}
	sort.Strings(ks)
	return "{" + strings.Join(ks, ",") + "}"
}

func sameValue(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

// TestKubePrometheusParity: the relay (all four kubelet endpoints, the kube-prometheus preset)
// remote-writing into one Prometheus gives kube-prometheus's rules the same results as a
// Prometheus scraping the fake kubelets with kube-prometheus's own kubelet scrape
// configuration; both scrape the same real kube-state-metrics.
func TestKubePrometheusParity(t *testing.T) {
	b := needBed(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	needKSMBinary(t, ctx)
	defer parityPods(ctx, t, b)()
	ksm, err := b.StartKubeStateMetrics(ctx, "--resources=nodes,pods,namespaces")
	if err != nil {
		t.Fatal(err)
	}
	defer ksm.Stop()

	ruleFiles, groups := kpRules(t)
	global := fmt.Sprintf("global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", parityInterval, parityInterval)
	ksmJob := ksm.ScrapeJob()

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(b.AdminToken), 0o600); err != nil {
		t.Fatal(err)
	}
	// The fake kubelets serve no /metrics/slis: kube-prometheus's fourth endpoint is left out.
	paths := map[string]bool{"/metrics": true, "/metrics/cadvisor": true, "/metrics/probes": true}
	direct, err := b.StartPrometheus2(ctx, bed.PromOptions{Name: "prometheus-kp-direct",
		Config: global + kpKubeletScrapeConfigs(t, b.Nodes(), tokenFile, paths) + ksmJob, RuleFiles: ruleFiles})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Stop()
	relayed, err := b.StartPrometheus2(ctx, bed.PromOptions{Name: "prometheus-kp-relay",
		Config: global + "scrape_configs:\n" + ksmJob, RuleFiles: ruleFiles, RemoteWriteReceiver: true})
	if err != nil {
		t.Fatal(err)
	}
	defer relayed.Stop()
	r, err := b.StartRelay(ctx, "--kubelet-endpoints", "cadvisor,metrics,probes,resource",
		"--metric-relabel-preset", "kube-prometheus", "--remote-write-url", relayed.RemoteWriteURL, "--scrape-interval", parityInterval)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()

	// Both sides up: every kubelet target and kube-state-metrics, and the rules have run
	// over a few samples.
	nodes := len(b.Nodes())
	for name, p := range map[string]*bed.Prometheus{"direct": direct, "relay": relayed} {
		if _, err := p.WaitQuery(ctx, `up{job="kubelet"} == 1`, 2*time.Minute, func(s []bed.Sample) bool { return len(s) >= 3*nodes }); err != nil {
			t.Fatalf("%s: kubelet targets not up: %v\n%s", name, err, r.Logs(20))
		}
		if _, err := p.WaitQuery(ctx, `node_namespace_pod_container:container_memory_working_set_bytes`, 2*time.Minute, bed.NonEmpty); err != nil {
			t.Fatalf("%s: no rule results: %v", name, err)
		}
	}
	time.Sleep(30 * time.Second) // rate()s over several samples on both sides

	// With the preset, the relay sends exactly the series kube-prometheus keeps (on the
	// endpoints kube-prometheus scrapes).
	sel := `{job="kubelet", metrics_path=~"/metrics|/metrics/cadvisor|/metrics/probes"}`
	dSeries, err := direct.Query(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	rSeries, err := relayed.Query(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	compareSets(t, "series "+sel, dSeries, rSeries, false)

	// Every cAdvisor- and kubelet-based recording rule: same series, same values.
	// /metrics series with a namespace are enriched too: each volume's claim gets the team of
	// its namespace, as the namespace's container series do.
	vols, err := relayed.Query(ctx, `kubelet_volume_stats_used_bytes`)
	if err != nil || len(vols) == 0 {
		t.Fatalf("no kubelet_volume_stats_used_bytes on the relay's side: %v", err)
	}
	teams, err := relayed.Query(ctx, `group by (namespace, team) (container_memory_working_set_bytes{team!=""})`)
	if err != nil {
		t.Fatal(err)
	}
	teamOf := map[string]string{}
	for _, s := range teams {
		teamOf[s.Metric["namespace"]] = s.Metric["team"]
	}
	for _, v := range vols {
		if v.Metric["team"] != teamOf[v.Metric["namespace"]] {
			t.Errorf("volume %v: team %q, its namespace's containers have %q", v.Metric, v.Metric["team"], teamOf[v.Metric["namespace"]])
		}
	}

	// Every recording rule: the cAdvisor- and kubelet-based ones, and the rest (kube-state-metrics
	// ones must agree too, and the apiserver ones are empty on both sides).
	checked, nonEmpty, kubeletRules := 0, 0, 0
	for _, g := range groups {
		for _, rule := range g.Rules {
			rec, _ := rule["record"].(string)
			expr, _ := rule["expr"].(string)
			if rec == "" {
				continue
			}
			checked++
			if strings.Contains(expr, `job="kubelet"`) {
				kubeletRules++
			}
			d, err := direct.Query(ctx, rec)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := relayed.Query(ctx, rec)
			if err != nil {
				t.Fatal(err)
			}
			if len(d) > 0 {
				nonEmpty++
			}
			compareSets(t, "rule "+rec, d, rs, true)
		}
	}
	if kubeletRules < 8 || nonEmpty < 10 {
		t.Fatalf("%d rules (%d on kubelet series) checked, %d with results: the comparison is too thin", checked, kubeletRules, nonEmpty)
	}
	t.Logf("%d recording rules compared (%d on kubelet series), %d with results on both sides", checked, kubeletRules, nonEmpty)

	// The compute-resources dashboards' queries, with their variables set to a namespace, pod
	// and node the fake kubelets serve.
	pick, err := relayed.Query(ctx, `topk(1, node_namespace_pod_container:container_memory_working_set_bytes{namespace!="kube-system"})`)
	if err != nil || len(pick) == 0 {
		t.Fatalf("no pod to point the dashboards at: %v", err)
	}
	vars := map[string]string{"$__rate_interval": "1m", "$cluster": "", "$namespace": pick[0].Metric["namespace"],
		"$pod": pick[0].Metric["pod"], "$node": pick[0].Metric["node"], "$type": "deployment", "$workload": "none"}
	queries, withData := 0, 0
	for _, q := range dashboardQueries(t, vars) {
		d, err := direct.Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		rs, err := relayed.Query(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		queries++
		if len(d) > 0 {
			withData++
		}
		compareSets(t, "dashboard query "+q, d, rs, true)
	}
	if withData < 20 {
		t.Fatalf("%d of %d dashboard queries have data: the comparison is too thin", withData, queries)
	}
	t.Logf("%d compute-resources dashboard queries compared, %d with data", queries, withData)

	// KubeletDown and TargetDown do not fire (nor are pending) on the relay's side.
	for _, g := range groups {
		for _, rule := range g.Rules {
			if a, _ := rule["alert"].(string); a == "KubeletDown" || a == "TargetDown" {
				res, err := relayed.Query(ctx, rule["expr"].(string))
				if err != nil {
					t.Fatal(err)
				}
				if len(res) != 0 {
					t.Errorf("%s would fire on the relay's side: %v", a, res)
				}
			}
		}
	}
	if res, err := relayed.Query(ctx, `ALERTS{alertname=~"KubeletDown|TargetDown"}`); err != nil || len(res) != 0 {
		t.Errorf("relay side ALERTS %v %v", res, err)
	}
}

// compareSets reports series that only one side has (and, with values, different values).
func compareSets(t *testing.T, what string, direct, relayed []bed.Sample, values bool) {
	t.Helper()
	d, r := map[string]float64{}, map[string]float64{}
	for _, s := range direct {
		d[seriesKey(s.Metric)] = s.V
	}
	for _, s := range relayed {
		if s.Metric["metrics_path"] == "/metrics/resource" {
			continue // kube-prometheus does not scrape /metrics/resource (kube-prometheus-stack can)
		}
		r[seriesKey(s.Metric)] = s.V
	}
	var only []string
	for k, v := range d {
		rv, ok := r[k]
		switch {
		case !ok:
			only = append(only, "direct only: "+k)
		case values && !sameValue(v, rv):
			only = append(only, fmt.Sprintf("value %s: direct %v, relay %v", k, v, rv))
		}
	}
	for k := range r {
		if _, ok := d[k]; !ok {
			only = append(only, "relay only: "+k)
		}
	}
	if len(only) > 0 {
		sort.Strings(only)
		if len(only) > 10 {
			only = append(only[:10], fmt.Sprintf("... %d more", len(only)-10))
		}
		t.Errorf("%s: %d direct, %d relayed series differ:\n%s", what, len(d), len(r), strings.Join(only, "\n"))
	}
}

// The generated kube-prometheus kubelet scrape configuration is one Prometheus accepts.
func TestKubePrometheusScrapeConfig(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("no promtool (apt-get install prometheus)")
	}
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes := []*bed.Node{{Name: "node-1", IP: "198.18.0.10", Port: bed.KubeletPort}, {Name: "node-2", IP: "198.18.0.11", Port: bed.KubeletPort}}
	cfg := kpKubeletScrapeConfigs(t, nodes, tok, map[string]bool{"/metrics": true, "/metrics/cadvisor": true, "/metrics/probes": true, "/metrics/slis": true})
	if n := strings.Count(cfg, "job_name: serviceMonitor/monitoring/kubelet/"); n != 4 {
		t.Fatalf("%d kubelet jobs, want 4:\n%s", n, cfg)
	}
	f := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "config", "--syntax-only", f).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s\n%s", err, out, cfg)
	}
}

var kpDashboards = []string{"k8s-resources-cluster.json", "k8s-resources-namespace.json", "k8s-resources-node.json",
	"k8s-resources-pod.json", "k8s-resources-workload.json", "k8s-resources-workloads-namespace.json"}

// dashboardQueries returns every panel query of the compute-resources dashboards, with the
// variables replaced (longest name first, so $pod does not eat $pods).
func dashboardQueries(t *testing.T, vars map[string]string) []string {
	names := make([]string, 0, len(vars))
	for k := range vars {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	var out []string
	seen := map[string]bool{}
	var walk func(any)
	walk = func(o any) {
		switch v := o.(type) {
		case map[string]any:
			if e, ok := v["expr"].(string); ok && e != "" {
				for _, n := range names {
					e = strings.ReplaceAll(e, n, vars[n])
				}
				if !seen[e] {
					seen[e] = true
					out = append(out, e)
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	for _, f := range kpDashboards {
		b, err := os.ReadFile(filepath.Join(kpDir, f))
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := yaml.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		walk(d["panels"])
		walk(d["rows"])
	}
	if strings.Contains(strings.Join(out, ""), "$") {
		t.Fatalf("a dashboard variable is left unset in %q", out)
	}
	return out
}
