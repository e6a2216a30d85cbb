package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/promconfig"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/remotewrite"
)

func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repo root not found at %s: %v", root, err)
	}
	return root
}

var (
	renderOnce sync.Once
	rendered   map[string][]byte
	renderErr  error
)

// renderings renders everything once per test binary. Missing tools fail the test (never skip).
func renderings(t *testing.T) map[string][]byte {
	t.Helper()
	root := repoRoot(t)
	renderOnce.Do(func() { rendered, renderErr = RenderAll(root) })
	if renderErr != nil {
		t.Fatalf("RenderAll: %v", renderErr)
	}
	return rendered
}

func objects(t *testing.T, name string) []*unstructured.Unstructured {
	t.Helper()
	b, ok := renderings(t)[name]
	if !ok {
		t.Fatalf("no rendering %q", name)
	}
	objs, err := Objects(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(objs) == 0 {
		t.Fatalf("%s: no objects", name)
	}
	return objs
}

// Rule is a normalized RBAC policy rule.
type Rule struct {
	APIGroups, Resources, Verbs, ResourceNames, NonResourceURLs []string
}

func rulesOf(t *testing.T, cr *unstructured.Unstructured) []Rule {
	t.Helper()
	raw, _, _ := unstructured.NestedSlice(cr.Object, "rules")
	var rules []Rule
	for _, r := range raw {
		m := r.(map[string]any)
		for k := range m {
			switch k {
			case "apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs":
			default:
				t.Errorf("ClusterRole %s: unexpected rule field %q", cr.GetName(), k)
			}
		}
		strs := func(k string) []string {
			s, _, err := unstructured.NestedStringSlice(m, k)
			if err != nil {
				t.Errorf("rule field %s: %v", k, err)
			}
			sort.Strings(s)
			return s
		}
		rules = append(rules, Rule{strs("apiGroups"), strs("resources"), strs("verbs"), strs("resourceNames"), strs("nonResourceURLs")})
	}
	return rules
}

// permissions flattens rules to the set of "group/resource:verb" grants.
func permissions(rules []Rule) []string {
	set := map[string]bool{}
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					set[fmt.Sprintf("%s/%s:%s", g, res, v)] = true
				}
			}
		}
		for _, u := range r.NonResourceURLs {
			for _, v := range r.Verbs {
				set["nonResourceURL "+u+":"+v] = true
			}
		}
		if len(r.ResourceNames) > 0 {
			set["resourceNames restriction"] = true
		}
	}
	var out []string
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// The least-privilege grants of each mode (deploy/README.md's table), nothing else. A feature that needs more
// adds its grant here, in both files and in the chart.
var wantPermissions = map[string][]string{
	"apiserver": {"/namespaces:list", "/namespaces:watch", "/nodes/proxy:get", "/nodes:list", "/nodes:watch"},
	"kubelet":   {"/namespaces:list", "/namespaces:watch", "/nodes/metrics:get", "/nodes:list", "/nodes:watch"},
}

// What secure serving adds (components/secure-metrics), and the role for the scrapers.
var (
	wantSecurePermissions = []string{"authentication.k8s.io/tokenreviews:create", "authorization.k8s.io/subjectaccessreviews:create"}
	wantReaderPermissions = []string{"nonResourceURL /metrics/self:get", "nonResourceURL /metrics:get"}
	// What pod enrichment adds (components/pod-enrichment), in either mode.
	wantPodPermissions = []string{"/pods:list", "/pods:watch", "apps/replicasets:list", "apps/replicasets:watch", "batch/jobs:list", "batch/jobs:watch"}
)

// The role files: the single source of truth of each role, read by the e2e bed.
var roleFiles = []struct {
	file, name string
	want       []string
}{
	{"deploy/kustomize/base/clusterrole.yaml", "kubelet-meta-proxy", wantPermissions["apiserver"]},
	{"deploy/kustomize/overlays/daemonset/clusterrole.yaml", "kubelet-meta-proxy", wantPermissions["kubelet"]},
	{"deploy/kustomize/components/secure-metrics/clusterrole.yaml", "kubelet-meta-proxy-secure-metrics", wantSecurePermissions},
	{"deploy/kustomize/components/secure-metrics/metrics-reader.yaml", "kubelet-meta-proxy-metrics-reader", wantReaderPermissions},
	{"deploy/kustomize/components/pod-enrichment/clusterrole.yaml", "kubelet-meta-proxy-pod-enrichment", wantPodPermissions},
}

func TestClusterRoleFilesAreTheLeastPrivilegeRoles(t *testing.T) {
	for _, rf := range roleFiles {
		t.Run(rf.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(repoRoot(t), rf.file))
			if err != nil {
				t.Fatal(err)
			}
			objs, err := Objects(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) != 1 || len(splitNonEmpty(b)) != 1 {
				t.Fatalf("must hold exactly one document, has %d objects", len(objs))
			}
			// The e2e bed reads the file with a strict typed decode: unknown fields would break it.
			var typed rbacv1.ClusterRole
			if err := yaml.UnmarshalStrict(b, &typed); err != nil {
				t.Fatalf("does not decode strictly as an rbac/v1 ClusterRole: %v", err)
			}
			cr := objs[0]
			if cr.GetKind() != "ClusterRole" || cr.GetAPIVersion() != "rbac.authorization.k8s.io/v1" || cr.GetName() != rf.name {
				t.Fatalf("%s %s %q, want rbac.authorization.k8s.io/v1 ClusterRole %s", cr.GetAPIVersion(), cr.GetKind(), cr.GetName(), rf.name)
			}
			if got := permissions(rulesOf(t, cr)); !slices.Equal(got, rf.want) {
				t.Fatalf("grants %v, want exactly %v", got, rf.want)
			}
			if _, found, _ := unstructured.NestedFieldNoCopy(cr.Object, "aggregationRule"); found {
				t.Fatal("must not aggregate other roles")
			}
		})
	}
}

func splitNonEmpty(b []byte) [][]byte {
	var out [][]byte
	for _, d := range splitYAML(b) {
		if s := strings.TrimSpace(stripComments(string(d))); s != "" {
			out = append(out, d)
		}
	}
	return out
}

func stripComments(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// contractFlags reads the `run` flags from docs/CONTRACTS.md's CLI section.
func contractFlags(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs/CONTRACTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "## CLI")
	if start < 0 {
		t.Fatal("docs/CONTRACTS.md has no \"## CLI\" section")
	}
	s = s[start+len("## CLI"):]
	if end := strings.Index(s, "\n## "); end >= 0 {
		s = s[:end]
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile("`(--[a-z0-9][a-z0-9.-]*[a-z0-9])").FindAllStringSubmatch(s, -1) {
		flags[m[1]] = true
	}
	// Flags listed after a comma inside one backquoted span, e.g. `--mode=apiserver|kubelet`.
	for _, m := range regexp.MustCompile(`(?:^|[\s(,])(--[a-z0-9][a-z0-9-]*)`).FindAllStringSubmatch(s, -1) {
		flags[m[1]] = true
	}
	for _, must := range []string{"--mode", "--node-name-or-ip", "--namespace-labels", "--metrics-port", "--remote-write-url", "--external-label", "--shard-count", "--shard-index"} {
		if !flags[must] {
			t.Fatalf("docs/CONTRACTS.md parse: %s not found (found %v)", must, flags)
		}
	}
	return flags
}

type renderSpec struct {
	name          string
	workloadKind  string
	mode          string
	namespace     bool // the rendering includes the Namespace
	serviceMon    bool
	hostNetwork   bool
	image         string // the relay's image, "" = any kubelet-meta-proxy image
	replicas      int64  // Deployment/StatefulSet replicas, 0 = unchecked
	remoteWrite   bool
	secure        bool     // --metrics-secure with its ClusterRoles
	pods          bool     // pod enrichment (--workload-labels) with its ClusterRole
	wantArgs      []string // args that must be present
	wantFileFlags []string // --*-file flags that must be present (paths must lie in a mounted volume)
	wantEnv       []string // env variables that must be present
	selfMetrics   bool     // the ServiceMonitor also scrapes /metrics/self as job="kubelet-meta-proxy"
	relabelings   bool     // the ServiceMonitor's /metrics endpoint has relabelings and metricRelabelings
	mixin         bool     // the PrometheusRule of mixin/alerts.yaml and the ConfigMap of mixin/dashboards
	arbitraryUID  bool     // the pod sets no runAsUser/runAsGroup/fsGroup (OpenShift's SCC assigns them)
	priorityClass string
}

var specs = []renderSpec{
	{name: "kustomize/base", workloadKind: "Deployment", mode: "apiserver", namespace: true, replicas: 1, remoteWrite: true,
		wantArgs: []string{"--namespace-labels=team", "--metrics-port=8080"}},
	{name: "kustomize/overlays/daemonset", workloadKind: "DaemonSet", mode: "kubelet", namespace: true, remoteWrite: true},
	{name: "kustomize/overlays/ha", workloadKind: "Deployment", mode: "apiserver", namespace: true, replicas: 2, remoteWrite: true,
		wantArgs: []string{"--external-label=cluster=$(CLUSTER_NAME)", "--external-label=__replica__=$(POD_NAME)"}},
	{name: "kustomize/overlays/sharded", workloadKind: "StatefulSet", mode: "apiserver", namespace: true, replicas: 3, remoteWrite: true,
		wantArgs: []string{"--shard-count=3"}},
	{name: "kustomize/base+servicemonitor+remote-write-secret", workloadKind: "Deployment", mode: "apiserver", namespace: true, serviceMon: true, selfMetrics: true, replicas: 1, remoteWrite: true,
		wantFileFlags: []string{"--remote-write-bearer-token-file"}},
	{name: "kustomize/overlays/daemonset+host-network+remote-write-basic-auth", workloadKind: "DaemonSet", mode: "kubelet", namespace: true, hostNetwork: true, remoteWrite: true,
		wantArgs: []string{"--remote-write-basic-auth-username=$(REMOTE_WRITE_USERNAME)"}, wantFileFlags: []string{"--remote-write-basic-auth-password-file"}},
	{name: "kustomize/overlays/ha+servicemonitor+remote-write-basic-auth", workloadKind: "Deployment", mode: "apiserver", namespace: true, serviceMon: true, selfMetrics: true, replicas: 2, remoteWrite: true,
		wantArgs: []string{"--external-label=__replica__=$(POD_NAME)"}, wantFileFlags: []string{"--remote-write-basic-auth-password-file"}},
	{name: "kustomize/overlays/sharded+remote-write-secret+servicemonitor", workloadKind: "StatefulSet", mode: "apiserver", namespace: true, serviceMon: true, selfMetrics: true, replicas: 3, remoteWrite: true,
		wantFileFlags: []string{"--remote-write-bearer-token-file"}},
	{name: "kustomize/base+servicemonitor+mixin", workloadKind: "Deployment", mode: "apiserver", namespace: true, serviceMon: true, selfMetrics: true, mixin: true, replicas: 1, remoteWrite: true},
	{name: "kustomize/base+servicemonitor+secure-metrics", workloadKind: "Deployment", mode: "apiserver", namespace: true, serviceMon: true, selfMetrics: true, replicas: 1, remoteWrite: true, secure: true},
	{name: "kustomize/overlays/daemonset+secure-metrics", workloadKind: "DaemonSet", mode: "kubelet", namespace: true, remoteWrite: true, secure: true},
	{name: "kustomize/base+pod-enrichment", workloadKind: "Deployment", mode: "apiserver", namespace: true, replicas: 1, remoteWrite: true, pods: true,
		wantArgs: []string{"--workload-labels"}},
	{name: "kustomize/overlays/daemonset+pod-enrichment+secure-metrics", workloadKind: "DaemonSet", mode: "kubelet", namespace: true, remoteWrite: true, secure: true, pods: true,
		wantArgs: []string{"--workload-labels", "--metrics-secure"}},
	{name: "installer", workloadKind: "Deployment", mode: "apiserver", namespace: true, replicas: 1, remoteWrite: true, image: InstallerImage},
	{name: "chart/default", workloadKind: "Deployment", mode: "apiserver", replicas: 1,
		wantArgs: []string{"--namespace-labels=team", "--metrics-port=8080"}},
	{name: "chart/kubelet", workloadKind: "DaemonSet", mode: "kubelet", hostNetwork: true, serviceMon: true, selfMetrics: true, remoteWrite: true, secure: true, pods: true, image: "example.com/kmp:v1",
		wantArgs: []string{"--remote-write-header=X-Scope-OrgID=tenant-1", "--pod-labels=app.kubernetes.io/name", "--workload-labels", "--pod-node-check=drop", "--label-precedence=namespace"}, wantFileFlags: []string{"--remote-write-bearer-token-file"}},
	{name: "chart/ha", workloadKind: "Deployment", mode: "apiserver", replicas: 2, remoteWrite: true, pods: true,
		wantArgs: []string{"--workload-labels", "--pod-node-check=plain", "--namespace-labels=team,cost-center", "--external-label=cluster=prod-eu-1", "--external-label=__replica__=$(POD_NAME)",
			"--remote-write-basic-auth-username=$(REMOTE_WRITE_USERNAME)"},
		wantFileFlags: []string{"--remote-write-basic-auth-password-file"}},
	{name: "chart/sharded", workloadKind: "StatefulSet", mode: "apiserver", replicas: 2, remoteWrite: true, serviceMon: true, selfMetrics: true,
		relabelings: true, mixin: true, priorityClass: "system-cluster-critical",
		wantArgs: []string{"--shard-count=2"}, wantFileFlags: []string{"--remote-write-ca-file"}, wantEnv: []string{"GOMEMLIMIT", "POD_NAME"}},
	{name: "chart/config-file", workloadKind: "Deployment", mode: "apiserver", replicas: 1,
		wantArgs: []string{"--config.file=/etc/kubelet-meta-proxy/config/relay.yml"}},
	{name: "chart/openshift", workloadKind: "Deployment", mode: "apiserver", replicas: 1, arbitraryUID: true,
		wantArgs: []string{"--namespace-labels=team"}},
}

func TestEveryRenderingIsChecked(t *testing.T) {
	var checked []string
	for _, s := range specs {
		checked = append(checked, s.name)
	}
	sort.Strings(checked)
	if got := Names(renderings(t)); !slices.Equal(got, checked) {
		t.Fatalf("RenderAll renders %v, the tests check %v", got, checked)
	}
	// Every overlay and component directory is rendered by some kustomization.
	root := repoRoot(t)
	used := map[string]bool{}
	for _, k := range Kustomizations {
		used[k.Dir] = true
		for _, c := range k.Components {
			used["components/"+c] = true
		}
	}
	for _, glob := range []string{"overlays/*", "components/*"} {
		dirs, _ := filepath.Glob(filepath.Join(root, "deploy/kustomize", glob))
		if len(dirs) == 0 {
			t.Fatalf("no %s", glob)
		}
		for _, d := range dirs {
			rel, _ := filepath.Rel(filepath.Join(root, "deploy/kustomize"), d)
			if !used[rel] {
				t.Errorf("deploy/kustomize/%s is never rendered (add it to Kustomizations)", rel)
			}
		}
	}
}

func TestRenderings(t *testing.T) {
	flags := contractFlags(t)
	for _, spec := range specs {
		t.Run(spec.name, func(t *testing.T) { checkRendering(t, spec, objects(t, spec.name), flags) })
	}
}

func byKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

var clusterScoped = map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true}

func checkRendering(t *testing.T, spec renderSpec, objs []*unstructured.Unstructured, flags map[string]bool) {
	seen := map[string]bool{}
	for _, o := range objs {
		id := o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
		if seen[id] {
			t.Errorf("duplicate object %s", id)
		}
		seen[id] = true
		if clusterScoped[o.GetKind()] {
			if o.GetNamespace() != "" {
				t.Errorf("%s: cluster-scoped object with a namespace", id)
			}
		} else if o.GetNamespace() != ReleaseNamespace {
			t.Errorf("%s: namespace %q, want %q", id, o.GetNamespace(), ReleaseNamespace)
		}
	}

	workloads := byKind(objs, spec.workloadKind)
	total := 0
	for _, k := range []string{"Deployment", "DaemonSet", "StatefulSet", "Pod", "Job", "CronJob", "ReplicaSet"} {
		total += len(byKind(objs, k))
	}
	if len(workloads) != 1 || total != 1 {
		t.Fatalf("want exactly one workload, a %s; have %d %s of %d workloads", spec.workloadKind, len(workloads), spec.workloadKind, total)
	}
	w := workloads[0]
	podSpec, _, _ := unstructured.NestedMap(w.Object, "spec", "template", "spec")
	podLabels, _, _ := unstructured.NestedStringMap(w.Object, "spec", "template", "metadata", "labels")
	selector, _, _ := unstructured.NestedStringMap(w.Object, "spec", "selector", "matchLabels")
	if len(selector) == 0 || !subset(selector, podLabels) {
		t.Errorf("workload selector %v does not select its pod labels %v", selector, podLabels)
	}
	if spec.replicas != 0 {
		if r, _, _ := unstructured.NestedInt64(w.Object, "spec", "replicas"); r != spec.replicas {
			t.Errorf("replicas %d, want %d", r, spec.replicas)
		}
	}

	// RBAC: the mode's ClusterRole with exactly its grants; with secure serving also the reviews' role and the
	// scrapers' reader role; every binding binds a role of the rendering to the workload's ServiceAccount.
	sa, _, _ := unstructured.NestedString(podSpec, "serviceAccountName")
	if sa == "" || !seen["ServiceAccount/"+ReleaseNamespace+"/"+sa] {
		t.Errorf("serviceAccountName %q is not a ServiceAccount of the rendering", sa)
	}
	crs := byKind(objs, "ClusterRole")
	roles := map[string]*unstructured.Unstructured{}
	var relayRole *unstructured.Unstructured
	for _, cr := range crs {
		switch {
		case strings.HasSuffix(cr.GetName(), "-secure-metrics"):
			roles["secure"] = cr
		case strings.HasSuffix(cr.GetName(), "-metrics-reader"):
			roles["reader"] = cr
		case strings.HasSuffix(cr.GetName(), "-pod-enrichment"):
			roles["pods"] = cr
		default:
			if relayRole != nil {
				t.Errorf("two relay ClusterRoles: %s and %s", relayRole.GetName(), cr.GetName())
			}
			relayRole = cr
		}
	}
	wantRoles := 1
	if spec.secure {
		wantRoles = 3
	}
	if spec.pods {
		wantRoles++
	}
	if relayRole == nil || len(crs) != wantRoles {
		t.Fatalf("%d ClusterRoles, want %d (the relay's%s)", len(crs), wantRoles, map[bool]string{true: ", secure-metrics and metrics-reader"}[spec.secure])
	}
	if got := permissions(rulesOf(t, relayRole)); !slices.Equal(got, wantPermissions[spec.mode]) {
		t.Errorf("ClusterRole %s grants %v, want exactly %v (mode %s)", relayRole.GetName(), got, wantPermissions[spec.mode], spec.mode)
	}
	if spec.secure {
		if r := roles["secure"]; r == nil || !slices.Equal(permissions(rulesOf(t, r)), wantSecurePermissions) {
			t.Errorf("secure-metrics ClusterRole %v, want one granting exactly %v", r, wantSecurePermissions)
		}
		if r := roles["reader"]; r == nil || !slices.Equal(permissions(rulesOf(t, r)), wantReaderPermissions) {
			t.Errorf("metrics-reader ClusterRole %v, want one granting exactly %v", r, wantReaderPermissions)
		}
	}
	if r := roles["pods"]; spec.pods != (r != nil) || (r != nil && !slices.Equal(permissions(rulesOf(t, r)), wantPodPermissions)) {
		t.Errorf("pod-enrichment ClusterRole %v, want one (%v) granting exactly %v", r, spec.pods, wantPodPermissions)
	}
	if n := len(byKind(objs, "Role")) + len(byKind(objs, "RoleBinding")); n != 0 {
		t.Errorf("%d Roles/RoleBindings: the relay needs none", n)
	}
	crbs := byKind(objs, "ClusterRoleBinding")
	wantBound := []string{relayRole.GetName()}
	if spec.secure {
		wantBound = append(wantBound, roles["secure"].GetName())
	}
	if spec.pods {
		wantBound = append(wantBound, roles["pods"].GetName())
	}
	var bound []string
	for _, crb := range crbs {
		roleRef, _, _ := unstructured.NestedStringMap(crb.Object, "roleRef")
		if roleRef["kind"] != "ClusterRole" || roleRef["apiGroup"] != "rbac.authorization.k8s.io" {
			t.Errorf("ClusterRoleBinding %s roleRef %v", crb.GetName(), roleRef)
		}
		bound = append(bound, roleRef["name"])
		subjects, _, _ := unstructured.NestedSlice(crb.Object, "subjects")
		want := []any{map[string]any{"kind": "ServiceAccount", "name": sa, "namespace": ReleaseNamespace}}
		if !reflect.DeepEqual(subjects, want) {
			t.Errorf("ClusterRoleBinding %s subjects %v, want %v", crb.GetName(), subjects, want)
		}
	}
	sort.Strings(bound)
	sort.Strings(wantBound)
	if !slices.Equal(bound, wantBound) {
		t.Errorf("ClusterRoleBindings bind %v to the relay, want %v (the metrics-reader role is for scrapers)", bound, wantBound)
	}

	// Pod security.
	if v, _, _ := unstructured.NestedBool(podSpec, "automountServiceAccountToken"); !v {
		t.Error("pod automountServiceAccountToken must be true (the relay authenticates with its token)")
	}
	if v, _, _ := unstructured.NestedBool(podSpec, "securityContext", "runAsNonRoot"); !v {
		t.Error("pod securityContext.runAsNonRoot must be true")
	}
	if spec.arbitraryUID {
		for _, f := range []string{"runAsUser", "runAsGroup", "fsGroup"} {
			if v, found, _ := unstructured.NestedFieldNoCopy(podSpec, "securityContext", f); found {
				t.Errorf("pod securityContext.%s %v: want none (the platform assigns it)", f, v)
			}
		}
	} else if v, _, _ := unstructured.NestedInt64(podSpec, "securityContext", "runAsUser"); v != 65532 {
		t.Errorf("pod securityContext.runAsUser %d, want 65532 (distroless nonroot)", v)
	}
	if v, _, _ := unstructured.NestedString(podSpec, "priorityClassName"); v != spec.priorityClass {
		t.Errorf("priorityClassName %q, want %q", v, spec.priorityClass)
	}
	if v, _, _ := unstructured.NestedString(podSpec, "securityContext", "seccompProfile", "type"); v != "RuntimeDefault" {
		t.Errorf("pod seccompProfile %q, want RuntimeDefault", v)
	}
	for _, f := range []string{"hostPID", "hostIPC"} {
		if v, _, _ := unstructured.NestedBool(podSpec, f); v {
			t.Errorf("pod %s must not be set", f)
		}
	}
	hostNet, _, _ := unstructured.NestedBool(podSpec, "hostNetwork")
	if hostNet != spec.hostNetwork {
		t.Errorf("hostNetwork %v, want %v", hostNet, spec.hostNetwork)
	}
	if hostNet {
		if v, _, _ := unstructured.NestedString(podSpec, "dnsPolicy"); v != "ClusterFirstWithHostNet" {
			t.Errorf("hostNetwork with dnsPolicy %q, want ClusterFirstWithHostNet", v)
		}
	}
	if spec.namespace {
		nss := byKind(objs, "Namespace")
		if len(nss) != 1 || nss[0].GetName() != ReleaseNamespace {
			t.Fatalf("want the Namespace %s", ReleaseNamespace)
		}
		level := nss[0].GetLabels()["pod-security.kubernetes.io/enforce"]
		wantLevel := "restricted"
		if hostNet {
			wantLevel = "privileged"
		}
		if level != wantLevel {
			t.Errorf("Namespace pod-security enforce %q, want %q", level, wantLevel)
		}
	} else if n := len(byKind(objs, "Namespace")); n != 0 {
		t.Errorf("%d Namespaces, want none", n)
	}

	containers, _, _ := unstructured.NestedSlice(podSpec, "containers")
	if len(containers) != 1 {
		t.Fatalf("%d containers, want 1", len(containers))
	}
	if ic, _, _ := unstructured.NestedSlice(podSpec, "initContainers"); len(ic) != 0 {
		t.Errorf("unexpected initContainers")
	}
	c := containers[0].(map[string]any)
	image, _, _ := unstructured.NestedString(c, "image")
	if spec.image != "" && image != spec.image {
		t.Errorf("image %q, want %q", image, spec.image)
	}
	if spec.image == "" && !regexp.MustCompile(`^kubelet-meta-proxy:[\w.-]+$`).MatchString(image) {
		t.Errorf("image %q, want kubelet-meta-proxy:TAG", image)
	}
	sc, _, _ := unstructured.NestedMap(c, "securityContext")
	for path, want := range map[string]any{"runAsNonRoot": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false, "privileged": false} {
		if got, ok := sc[path]; !ok || got != want {
			t.Errorf("container securityContext.%s = %v, want %v", path, got, want)
		}
	}
	if drop, _, _ := unstructured.NestedStringSlice(sc, "capabilities", "drop"); !slices.Equal(drop, []string{"ALL"}) {
		t.Errorf("capabilities.drop %v, want [ALL]", drop)
	}
	if add, found, _ := unstructured.NestedFieldNoCopy(sc, "capabilities", "add"); found {
		t.Errorf("capabilities.add %v, want none", add)
	}
	if v, _, _ := unstructured.NestedString(sc, "seccompProfile", "type"); v != "RuntimeDefault" {
		t.Errorf("container seccompProfile %q, want RuntimeDefault", v)
	}
	for _, kind := range []string{"requests", "limits"} {
		for _, res := range []string{"cpu", "memory"} {
			if v, _, _ := unstructured.NestedFieldNoCopy(c, "resources", kind, res); v == nil {
				t.Errorf("resources.%s.%s missing", kind, res)
			}
		}
	}
	// A relay that scrapes every node must fit the project's own 500-node measurement (README.md: 635 MiB).
	if spec.mode == "apiserver" {
		lim, _, _ := unstructured.NestedString(c, "resources", "limits", "memory")
		if q, err := resource.ParseQuantity(lim); err != nil || q.Cmp(resource.MustParse("635Mi")) <= 0 {
			t.Errorf("resources.limits.memory %q: below the 635 MiB the 500 nodes x 30 pods load test peaked at (%v)", lim, err)
		}
	}

	// Args: `run`, then only contract flags.
	args, _, _ := unstructured.NestedStringSlice(c, "args")
	if cmd, _, _ := unstructured.NestedStringSlice(c, "command"); len(cmd) != 0 {
		t.Errorf("command %v overrides the image's entrypoint", cmd)
	}
	if len(args) == 0 || args[0] != "run" {
		t.Fatalf("args %v, want `run` first", args)
	}
	argVal := map[string][]string{}
	for _, a := range args[1:] {
		name, val, _ := strings.Cut(a, "=")
		if !flags[name] {
			t.Errorf("arg %q: flag %s is not in docs/CONTRACTS.md", a, name)
		}
		argVal[name] = append(argVal[name], val)
	}
	for _, a := range spec.wantArgs {
		if !slices.Contains(args, a) {
			t.Errorf("arg %q missing from %v", a, args)
		}
	}
	if got := argVal["--mode"]; !slices.Equal(got, []string{spec.mode}) {
		t.Errorf("--mode %v, want %s", got, spec.mode)
	}

	env := map[string]map[string]any{}
	envList, _, _ := unstructured.NestedSlice(c, "env")
	for _, e := range envList {
		m := e.(map[string]any)
		env[m["name"].(string)] = m
	}
	for _, name := range spec.wantEnv {
		if env[name] == nil {
			t.Errorf("env %s missing", name)
		}
	}
	fieldRef := func(name string) string {
		v, _, _ := unstructured.NestedString(env[name], "valueFrom", "fieldRef", "fieldPath")
		return v
	}
	for _, a := range args {
		for _, m := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(a, -1) {
			if env[m[1]] == nil {
				t.Errorf("arg %q references $(%s), which the container's env does not define", a, m[1])
			}
		}
	}
	if _, secure := argVal["--metrics-secure"]; secure != spec.secure {
		t.Errorf("--metrics-secure %v, want %v", secure, spec.secure)
	}
	if spec.mode == "kubelet" {
		// Kubelet serving certificates are verified, with the cluster CA unless changed on purpose.
		if got := argVal["--kubelet-ca-file"]; !slices.Equal(got, []string{"/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"}) {
			t.Errorf("--kubelet-ca-file %v, want the service account's cluster CA", got)
		}
		if _, ok := argVal["--kubelet-insecure-skip-verify"]; ok {
			t.Error("--kubelet-insecure-skip-verify in a shipped rendering")
		}
		if got := argVal["--node-name-or-ip"]; !slices.Equal(got, []string{"$(NODE_NAME)"}) {
			t.Errorf("--node-name-or-ip %v, want $(NODE_NAME)", got)
		}
		if fieldRef("NODE_NAME") != "spec.nodeName" {
			t.Errorf("env NODE_NAME must come from the downward API spec.nodeName")
		}
	} else if _, ok := argVal["--node-name-or-ip"]; ok {
		t.Error("--node-name-or-ip in apiserver mode limits the relay to one node")
	}
	if spec.mode == "kubelet" {
		tol, _, _ := unstructured.NestedSlice(podSpec, "tolerations")
		if !slices.ContainsFunc(tol, func(x any) bool {
			m := x.(map[string]any)
			return m["operator"] == "Exists" && m["key"] == nil && m["effect"] == nil
		}) {
			t.Errorf("kubelet mode: tolerations %v, want one that tolerates every taint (a relay on every node)", tol)
		}
	}
	if spec.replicas > 1 && spec.workloadKind == "Deployment" {
		pdbs := byKind(objs, "PodDisruptionBudget")
		if len(pdbs) != 1 {
			t.Fatalf("%d replicas but %d PodDisruptionBudgets", spec.replicas, len(pdbs))
		}
		pdbSel, _, _ := unstructured.NestedStringMap(pdbs[0].Object, "spec", "selector", "matchLabels")
		if minAvail, _, _ := unstructured.NestedInt64(pdbs[0].Object, "spec", "minAvailable"); minAvail != 1 || len(pdbSel) == 0 || !subset(pdbSel, podLabels) {
			t.Errorf("PodDisruptionBudget minAvailable %d selector %v, want 1 selecting the pods %v", minAvail, pdbSel, podLabels)
		}
		tsc, _, _ := unstructured.NestedSlice(podSpec, "topologySpreadConstraints")
		if len(tsc) == 0 || tsc[0].(map[string]any)["topologyKey"] != "kubernetes.io/hostname" {
			t.Errorf("topologySpreadConstraints %v, want the replicas spread over nodes", tsc)
		}
		clusterLabel := false
		for _, v := range argVal["--external-label"] {
			clusterLabel = clusterLabel || strings.HasPrefix(v, "cluster=")
		}
		if !clusterLabel || !slices.Contains(argVal["--external-label"], "__replica__=$(POD_NAME)") {
			t.Errorf("HA replicas need --external-label cluster=... and __replica__=$(POD_NAME), have %v", argVal["--external-label"])
		}
	}
	if env["POD_NAME"] != nil && fieldRef("POD_NAME") != "metadata.name" {
		t.Error("env POD_NAME must come from the downward API metadata.name")
	}
	for _, v := range argVal["--external-label"] {
		if strings.HasPrefix(v, "__replica__=") && v != "__replica__=$(POD_NAME)" {
			t.Errorf("--external-label=%s, want __replica__=$(POD_NAME)", v)
		}
	}
	if spec.workloadKind == "StatefulSet" {
		count := argVal["--shard-count"]
		r, _, _ := unstructured.NestedInt64(w.Object, "spec", "replicas")
		if len(count) != 1 || count[0] != strconv.FormatInt(r, 10) {
			t.Errorf("--shard-count %v must equal replicas %d", count, r)
		}
		if fieldRef("POD_NAME") != "metadata.name" {
			t.Error("sharded: env POD_NAME (the shard index's source) must come from metadata.name")
		}
		if _, ok := argVal["--shard-index"]; ok {
			t.Error("sharded: a fixed --shard-index would give every replica the same shard")
		}
		svc, _, _ := unstructured.NestedString(w.Object, "spec", "serviceName")
		found := false
		for _, s := range byKind(objs, "Service") {
			if ip, _, _ := unstructured.NestedString(s.Object, "spec", "clusterIP"); s.GetName() == svc && ip == "None" {
				found = true
			}
		}
		if !found {
			t.Errorf("StatefulSet serviceName %q is not a headless Service of the rendering", svc)
		}
	}
	if spec.remoteWrite {
		if got := argVal["--remote-write-url"]; !slices.Equal(got, []string{"$(REMOTE_WRITE_URL)"}) {
			t.Errorf("--remote-write-url %v, want $(REMOTE_WRITE_URL)", got)
		}
		if v, _, _ := unstructured.NestedString(env["REMOTE_WRITE_URL"], "valueFrom", "secretKeyRef", "key"); v != "url" {
			t.Error("env REMOTE_WRITE_URL must come from a Secret's key url")
		}
	} else if _, ok := argVal["--remote-write-url"]; ok {
		t.Error("unexpected --remote-write-url")
	}
	for _, e := range envList {
		if _, found, _ := unstructured.NestedFieldNoCopy(e.(map[string]any), "value"); found && strings.Contains(strings.ToLower(e.(map[string]any)["name"].(string)), "token") {
			t.Errorf("env %v: credentials must come from a Secret", e)
		}
	}

	// File flags point into read-only volumes mounted from Secrets that the env's secretKeyRefs also use.
	volumes := map[string]map[string]any{}
	vl, _, _ := unstructured.NestedSlice(podSpec, "volumes")
	for _, v := range vl {
		m := v.(map[string]any)
		volumes[m["name"].(string)] = m
	}
	mounts, _, _ := unstructured.NestedSlice(c, "volumeMounts")
	for _, f := range spec.wantFileFlags {
		if len(argVal[f]) != 1 {
			t.Errorf("%s: want once, have %v", f, argVal[f])
		}
	}
	for name, vals := range argVal {
		if !strings.HasSuffix(name, "-file") {
			continue
		}
		for _, path := range vals {
			// The projected service-account volume (automountServiceAccountToken) is mounted by the kubelet.
			if strings.HasPrefix(path, "/var/run/secrets/kubernetes.io/serviceaccount/") {
				continue
			}
			ok := false
			for _, mnt := range mounts {
				m := mnt.(map[string]any)
				mp, _ := m["mountPath"].(string)
				if strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/") {
					vol := volumes[m["name"].(string)]
					if vol == nil {
						t.Errorf("volumeMount %v has no volume", m)
					}
					if ro, _ := m["readOnly"].(bool); !ro {
						t.Errorf("volumeMount %s must be readOnly", mp)
					}
					if sn, _, _ := unstructured.NestedString(vol, "secret", "secretName"); sn == "" {
						t.Errorf("%s=%s: volume %v is not a Secret", name, path, vol)
					}
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s=%s lies in no volumeMount", name, path)
			}
		}
	}

	// Ports and probes: /healthz and /readyz on the named port "metrics" = --metrics-port.
	ports, _, _ := unstructured.NestedSlice(c, "ports")
	metricsPort := int64(0)
	for _, p := range ports {
		m := p.(map[string]any)
		if m["name"] == "metrics" {
			metricsPort, _, _ = unstructured.NestedInt64(m, "containerPort")
		}
	}
	if got := argVal["--metrics-port"]; metricsPort == 0 || !slices.Equal(got, []string{strconv.FormatInt(metricsPort, 10)}) {
		t.Errorf("container port \"metrics\" %d and --metrics-port %v disagree", metricsPort, got)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		p, _, _ := unstructured.NestedString(c, probe, "httpGet", "path")
		port, _, _ := unstructured.NestedFieldNoCopy(c, probe, "httpGet", "port")
		if p != path || (port != "metrics" && fmt.Sprint(port) != strconv.FormatInt(metricsPort, 10)) {
			t.Errorf("%s httpGet %s on %v, want %s on the metrics port", probe, p, port, path)
		}
		scheme, _, _ := unstructured.NestedString(c, probe, "httpGet", "scheme")
		if wantScheme := map[bool]string{true: "HTTPS"}[spec.secure]; scheme != wantScheme && !(scheme == "HTTP" && !spec.secure) {
			t.Errorf("%s scheme %q, want %q (--metrics-secure %v)", probe, scheme, wantScheme, spec.secure)
		}
	}

	// The Service exposes the pods' metrics port as "metrics".
	var relaySvc *unstructured.Unstructured
	for _, s := range byKind(objs, "Service") {
		if ip, _, _ := unstructured.NestedString(s.Object, "spec", "clusterIP"); ip == "None" {
			continue
		}
		if relaySvc != nil {
			t.Errorf("more than one non-headless Service")
		}
		relaySvc = s
	}
	if relaySvc == nil {
		t.Fatal("no Service")
	}
	sel, _, _ := unstructured.NestedStringMap(relaySvc.Object, "spec", "selector")
	if len(sel) == 0 || !subset(sel, podLabels) {
		t.Errorf("Service selector %v does not select the pods %v", sel, podLabels)
	}
	svcPorts, _, _ := unstructured.NestedSlice(relaySvc.Object, "spec", "ports")
	if len(svcPorts) != 1 || svcPorts[0].(map[string]any)["name"] != "metrics" || svcPorts[0].(map[string]any)["targetPort"] != "metrics" {
		t.Errorf("Service ports %v, want one named metrics targeting the port metrics", svcPorts)
	}

	sms := byKind(objs, "ServiceMonitor")
	if spec.serviceMon != (len(sms) == 1) || len(sms) > 1 {
		t.Fatalf("%d ServiceMonitors, want %v", len(sms), spec.serviceMon)
	}
	if spec.serviceMon {
		sm := sms[0]
		if sm.GetAPIVersion() != "monitoring.coreos.com/v1" {
			t.Errorf("ServiceMonitor apiVersion %s", sm.GetAPIVersion())
		}
		smSel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
		if len(smSel) == 0 || !subset(smSel, relaySvc.GetLabels()) {
			t.Errorf("ServiceMonitor selector %v does not select the Service's labels %v", smSel, relaySvc.GetLabels())
		}
		nsNames, _, _ := unstructured.NestedStringSlice(sm.Object, "spec", "namespaceSelector", "matchNames")
		if !slices.Equal(nsNames, []string{ReleaseNamespace}) {
			t.Errorf("ServiceMonitor namespaceSelector %v", nsNames)
		}
		// Each pod is scraped once: the selector matches one Service (not the sharded mode's headless one).
		selected := 0
		for _, s := range byKind(objs, "Service") {
			if subset(smSel, s.GetLabels()) {
				selected++
			}
		}
		if selected != 1 {
			t.Errorf("ServiceMonitor selector %v matches %d Services, want 1", smSel, selected)
		}
		eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		if want := map[bool]int{false: 1, true: 2}[spec.selfMetrics]; len(eps) != want {
			t.Fatalf("ServiceMonitor endpoints %v, want %d", eps, want)
		}
		ep := eps[0].(map[string]any)
		if ep["port"] != "metrics" || ep["path"] != "/metrics" || ep["honorLabels"] != true {
			t.Errorf("ServiceMonitor endpoint %v, want port metrics, path /metrics, honorLabels true", ep)
		}
		if spec.secure && (ep["scheme"] != "https" || ep["bearerTokenFile"] == nil) {
			t.Errorf("ServiceMonitor endpoint %v: want scheme https with the scraper's token (--metrics-secure)", ep)
		}
		if !spec.secure && ep["scheme"] == "https" {
			t.Errorf("ServiceMonitor endpoint %v: https without --metrics-secure", ep)
		}
		// Node-level series (no namespace, pod, container) must not get the relay pod's: with honorLabels,
		// Prometheus fills every label a series lacks from the target, so the target keeps none of them.
		epRelabel, _ := ep["relabelings"].([]any)
		if len(epRelabel) == 0 || !reflect.DeepEqual(epRelabel[0], map[string]any{"action": "labeldrop", "regex": "namespace|pod|container|service|endpoint"}) {
			t.Errorf("ServiceMonitor /metrics relabelings %v, want a labeldrop of namespace|pod|container|service|endpoint first", epRelabel)
		}
		// A relabelled namespace must not show both teams for five minutes: Prometheus marks series stale
		// only when it gave them the timestamp (or with trackTimestampsStaleness).
		if ep["honorTimestamps"] != false && ep["trackTimestampsStaleness"] != true {
			t.Errorf("ServiceMonitor /metrics endpoint %v: want honorTimestamps false or trackTimestampsStaleness true", ep)
		}
		hasRelabel := len(epRelabel) > 1
		_, hasMetricRelabel := ep["metricRelabelings"]
		if hasRelabel != spec.relabelings || hasMetricRelabel != spec.relabelings {
			t.Errorf("ServiceMonitor /metrics endpoint relabelings %v metricRelabelings %v, want both %v", ep["relabelings"], ep["metricRelabelings"], spec.relabelings)
		}
		if spec.selfMetrics {
			self := eps[1].(map[string]any)
			if self["port"] != "metrics" || self["path"] != "/metrics/self" || self["honorLabels"] == true {
				t.Errorf("ServiceMonitor second endpoint %v, want port metrics, path /metrics/self, no honorLabels", self)
			}
			// The mixin's rules select job="kubelet-meta-proxy", whatever the Service is called.
			rl, _ := self["relabelings"].([]any)
			if len(rl) == 0 || !reflect.DeepEqual(rl[0], map[string]any{"targetLabel": "job", "replacement": "kubelet-meta-proxy"}) {
				t.Errorf("ServiceMonitor /metrics/self relabelings %v, want job=kubelet-meta-proxy first", rl)
			}
			if spec.secure != (self["scheme"] == "https") {
				t.Errorf("ServiceMonitor /metrics/self endpoint %v: scheme https must match --metrics-secure (%v)", self, spec.secure)
			}
		}
	}

	// The mixin: the PrometheusRule's spec is mixin/alerts.yaml, the dashboards ConfigMap holds mixin/dashboards.
	rules := byKind(objs, "PrometheusRule")
	var dashCMs []*unstructured.Unstructured
	for _, cm := range byKind(objs, "ConfigMap") {
		if cm.GetLabels()["grafana_dashboard"] == "1" {
			dashCMs = append(dashCMs, cm)
		}
	}
	if !spec.mixin {
		if len(rules)+len(dashCMs) != 0 {
			t.Errorf("%d PrometheusRules and %d dashboard ConfigMaps, want none", len(rules), len(dashCMs))
		}
		return
	}
	if len(rules) != 1 || len(dashCMs) != 1 {
		t.Fatalf("%d PrometheusRules and %d dashboard ConfigMaps, want one each", len(rules), len(dashCMs))
	}
	if rules[0].GetAPIVersion() != "monitoring.coreos.com/v1" {
		t.Errorf("PrometheusRule apiVersion %s", rules[0].GetAPIVersion())
	}
	alerts, err := os.ReadFile(filepath.Join(repoRoot(t), "mixin/alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var wantSpec map[string]any
	if err := yaml.Unmarshal(alerts, &wantSpec); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := unstructured.NestedMap(rules[0].Object, "spec"); !reflect.DeepEqual(normalizeJSON(t, got), normalizeJSON(t, wantSpec)) {
		t.Errorf("PrometheusRule spec differs from mixin/alerts.yaml (run `make mixin`)")
	}
	files, _ := filepath.Glob(filepath.Join(repoRoot(t), "mixin/dashboards/*.json"))
	data, _, _ := unstructured.NestedStringMap(dashCMs[0].Object, "data")
	if len(files) == 0 || len(data) != len(files) {
		t.Errorf("dashboard ConfigMap has %d dashboards, mixin/dashboards %d", len(data), len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if data[filepath.Base(f)] != string(b) {
			t.Errorf("dashboard ConfigMap's %s differs from mixin/dashboards (run `make mixin`)", filepath.Base(f))
		}
	}
}

// normalizeJSON round-trips v through JSON, so that numbers decoded by different decoders compare equal.
func normalizeJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func subset(sub, super map[string]string) bool {
	for k, v := range sub {
		if super[k] != v {
			return false
		}
	}
	return true
}

// The installer bundle is the base with the image set, and nothing else changed.
func TestInstallerIsTheBaseWithIMG(t *testing.T) {
	r := renderings(t)
	inst := string(r["installer"])
	if !strings.Contains(inst, "image: "+InstallerImage+"\n") {
		t.Fatalf("installer lacks image %s", InstallerImage)
	}
	base := string(r["kustomize/base"])
	baseImg := regexp.MustCompile(`image: (kubelet-meta-proxy:\S+)\n`).FindStringSubmatch(base)
	if baseImg == nil {
		t.Fatal("base has no kubelet-meta-proxy image")
	}
	if got := strings.ReplaceAll(inst, InstallerImage, baseImg[1]); got != base {
		t.Errorf("installer differs from the base beyond the image:\n%s", got)
	}
}

// KUSTOMIZE_DIR picks an overlay, and the image is set without touching the tree.
func TestInstallerFromOverlayLeavesTreeAlone(t *testing.T) {
	root := repoRoot(t)
	kfile := filepath.Join(root, "deploy/kustomize/overlays/daemonset/kustomization.yaml")
	before, err := os.ReadFile(kfile)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "install.yaml")
	if _, err := run(root, "make", "-s", "build-installer", "IMG=example.com/other:v2", "KUSTOMIZE_DIR=deploy/kustomize/overlays/daemonset", "INSTALLER="+out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(b)
	if err != nil {
		t.Fatal(err)
	}
	ds := byKind(objs, "DaemonSet")
	if len(ds) != 1 || len(byKind(objs, "Deployment")) != 0 {
		t.Fatalf("installer from overlays/daemonset: kinds %v", kinds(objs))
	}
	if img, _, _ := unstructured.NestedSlice(ds[0].Object, "spec", "template", "spec", "containers"); img[0].(map[string]any)["image"] != "example.com/other:v2" {
		t.Errorf("image %v, want example.com/other:v2", img[0].(map[string]any)["image"])
	}
	after, _ := os.ReadFile(kfile)
	if !bytes.Equal(before, after) {
		t.Error("make build-installer changed deploy/kustomize/overlays/daemonset/kustomization.yaml")
	}
}

// `make build-installer` writes dist/install.yaml by default, which git ignores.
func TestInstallerPathIsGitIgnored(t *testing.T) {
	root := repoRoot(t)
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^INSTALLER \?= dist/install.yaml$`).Match(mk) {
		t.Error("Makefile: INSTALLER ?= dist/install.yaml missing")
	}
	gi, err := os.ReadFile(filepath.Join(root, ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(gi), "\n"), "/dist/install.yaml") {
		t.Error(".gitignore does not ignore /dist/install.yaml")
	}
}

func kinds(objs []*unstructured.Unstructured) []string {
	set := map[string]bool{}
	for _, o := range objs {
		set[o.GetKind()] = true
	}
	var out []string
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The chart with its defaults makes the kustomize base's objects (Helm leaves the Namespace to
// `--create-namespace`), with the same RBAC.
func TestChartMatchesKustomizeBase(t *testing.T) {
	var baseKinds []string
	for _, k := range kinds(objects(t, "kustomize/base")) {
		if k != "Namespace" {
			baseKinds = append(baseKinds, k)
		}
	}
	if got := kinds(objects(t, "chart/default")); !slices.Equal(got, baseKinds) {
		t.Errorf("chart kinds %v, kustomize base kinds %v (less Namespace)", got, baseKinds)
	}
	// Same object names with the release named kubelet-meta-proxy.
	names := func(objs []*unstructured.Unstructured) []string {
		var out []string
		for _, o := range objs {
			if o.GetKind() != "Namespace" {
				out = append(out, o.GetKind()+"/"+o.GetName())
			}
		}
		sort.Strings(out)
		return out
	}
	if a, b := names(objects(t, "chart/default")), names(objects(t, "kustomize/base")); !slices.Equal(a, b) {
		t.Errorf("chart objects %v, kustomize base objects %v", a, b)
	}
	// Both modes of the chart: same kinds but the workload.
	if got := kinds(objects(t, "chart/kubelet")); !slices.Contains(got, "DaemonSet") || slices.Contains(got, "Deployment") {
		t.Errorf("chart mode=kubelet kinds %v", got)
	}
}

// The chart's values.schema.json rejects what the templates cannot render.
func TestChartSchemaRejectsBadValues(t *testing.T) {
	helm, err := Tool(repoRoot(t), "helm")
	if err != nil {
		t.Fatal(err)
	}
	chart := filepath.Join(repoRoot(t), "dist/chart")
	for _, set := range []string{"mode=sidecar", "remoteWrite.auth.type=oauth", "metricsPort=0", "nosuchvalue=1", "remoteWrite.url=ftp://x"} {
		if out, err := run(repoRoot(t), helm, "template", "x", chart, "--set", set); err == nil {
			t.Errorf("helm template --set %s succeeded:\n%.300s", set, out)
		}
	}
	// A parent chart's global values are accepted.
	if out, err := run(repoRoot(t), helm, "template", "x", chart, "--set", "global.imageRegistry=example.com"); err != nil {
		t.Errorf("helm template with global values: %v\n%s", err, out)
	}
	// And a missing credential is an error, not an empty file.
	if _, err := run(repoRoot(t), helm, "template", "x", chart, "--set", "remoteWrite.url=https://x/api/v1/push", "--set", "remoteWrite.auth.type=bearerToken"); err == nil {
		t.Error("auth.type=bearerToken without a token rendered")
	}
}

// `make helm-lint` lints the chart with its defaults and every ci/*-values.yaml, --strict.
func TestHelmLint(t *testing.T) {
	if _, err := Tool(repoRoot(t), "helm"); err != nil {
		t.Fatal(err)
	}
	out, err := run(repoRoot(t), "make", "-s", "helm-lint")
	if err != nil {
		t.Fatalf("make helm-lint: %v\n%s", err, out)
	}
	ci, _ := filepath.Glob(filepath.Join(repoRoot(t), "dist/chart/ci/*-values.yaml"))
	if n := strings.Count(string(out), "1 chart(s) linted, 0 chart(s) failed"); n != 1+len(ci) || len(ci) < 2 {
		t.Errorf("make helm-lint linted %d times, want %d:\n%s", n, 1+len(ci), out)
	}
}

// Every YAML file under deploy/ and the chart's non-template files parse.
func TestYAMLFilesParse(t *testing.T) {
	root := repoRoot(t)
	n := 0
	for _, dir := range []string{"deploy", "dist/chart"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") || strings.Contains(p, "/templates/") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, doc := range splitYAML(b) {
				var v any
				if err := yaml.Unmarshal(doc, &v); err != nil {
					t.Errorf("%s: %v", p, err)
				}
			}
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n < 15 {
		t.Errorf("only %d YAML files found", n)
	}
}

var (
	cliOnce sync.Once
	cliPath string
	cliErr  error
)

// cli builds cmd/kubelet-meta-proxy once; tests that need it skip (saying why) while it does not build yet.
func cli(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kmp-cli-")
		if err != nil {
			cliErr = err
			return
		}
		cliPath = filepath.Join(dir, "kubelet-meta-proxy")
		_, cliErr = run(repoRoot(t), "go", "build", "-o", cliPath, "./cmd/kubelet-meta-proxy")
	})
	if cliErr != nil {
		t.Skipf("cmd/kubelet-meta-proxy does not build from the full tree yet: %v", cliErr)
	}
	return cliPath
}

// Every rendering's args parse with the real CLI (flag names and value types): `run ARGS... --help`, with the
// $(VAR)s the kubelet would expand set to plausible values, exits 0 only if every flag parses.
func TestArgsParseWithTheRealCLI(t *testing.T) {
	bin := cli(t)
	values := map[string]string{
		"NODE_NAME": "node-1", "POD_NAME": "kubelet-meta-proxy-1", "REMOTE_WRITE_URL": "https://mimir.example.com/api/v1/push",
		"REMOTE_WRITE_USERNAME": "tenant-1",
	}
	for _, spec := range specs {
		t.Run(spec.name, func(t *testing.T) {
			objs := objects(t, spec.name)
			w := byKind(objs, spec.workloadKind)
			if len(w) != 1 {
				t.Fatalf("no %s", spec.workloadKind)
			}
			containers, _, _ := unstructured.NestedSlice(w[0].Object, "spec", "template", "spec", "containers")
			c := containers[0].(map[string]any)
			args, _, _ := unstructured.NestedStringSlice(c, "args")
			env, _, _ := unstructured.NestedSlice(c, "env")
			vals := map[string]string{}
			for k, v := range values {
				vals[k] = v
			}
			for _, e := range env {
				m := e.(map[string]any)
				if v, ok := m["value"].(string); ok {
					vals[m["name"].(string)] = v
				}
			}
			var expanded []string
			for _, a := range args {
				expanded = append(expanded, regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).ReplaceAllStringFunc(a, func(ref string) string {
					name := ref[2 : len(ref)-1]
					v, ok := vals[name]
					if !ok {
						t.Errorf("no test value for $(%s)", name)
					}
					return v
				}))
			}
			if out, err := run(repoRoot(t), bin, append(expanded, "--help")...); err != nil {
				t.Errorf("kubelet-meta-proxy %v: %v\n%.500s", expanded, err, out)
			}
		})
	}
}

// `make deploy` / `make undeploy` pipe the IMG kustomization into $(KUBECTL) apply / delete.
func TestMakeDeployUndeploy(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	fake := filepath.Join(dir, "kubectl")
	script := "#!/bin/sh\necho \"$@\" > " + dir + "/args.$1\ncat > " + dir + "/stdin.$1\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for verb, wantArgs := range map[string]string{"deploy": "apply -f -", "undeploy": "delete --ignore-not-found -f -"} {
		if out, err := run(root, "make", "-s", verb, "IMG=example.com/kmp:v3", "KUBECTL="+fake, "KUSTOMIZE_DIR=deploy/kustomize/overlays/ha"); err != nil {
			t.Fatalf("make %s: %v\n%s", verb, err, out)
		}
		kubectlVerb := strings.Fields(wantArgs)[0]
		args, err := os.ReadFile(filepath.Join(dir, "args."+kubectlVerb))
		if err != nil {
			t.Fatalf("make %s did not call $(KUBECTL) %s: %v", verb, kubectlVerb, err)
		}
		if got := strings.TrimSpace(string(args)); got != wantArgs {
			t.Errorf("make %s: kubectl %s, want kubectl %s", verb, got, wantArgs)
		}
		stdin, _ := os.ReadFile(filepath.Join(dir, "stdin."+kubectlVerb))
		objs, err := Objects(stdin)
		if err != nil {
			t.Fatal(err)
		}
		if d := byKind(objs, "Deployment"); len(d) != 1 || !strings.Contains(string(stdin), "image: example.com/kmp:v3\n") || len(byKind(objs, "PodDisruptionBudget")) != 1 {
			t.Errorf("make %s fed kubectl %v without the ha overlay with image example.com/kmp:v3", verb, kinds(objs))
		}
	}
}

// Every object decodes strictly into its k8s.io/api type: no unknown or misspelt field, no wrong type. (The
// e2e bed's server-side dry-run checks the rest against a real kube-apiserver.)
func TestObjectsDecodeStrictly(t *testing.T) {
	newTyped := map[string]func() any{
		"v1/Namespace":      func() any { return &corev1.Namespace{} },
		"v1/ServiceAccount": func() any { return &corev1.ServiceAccount{} },
		"v1/Service":        func() any { return &corev1.Service{} },
		"v1/Secret":         func() any { return &corev1.Secret{} },
		"v1/ConfigMap":      func() any { return &corev1.ConfigMap{} },
		"rbac.authorization.k8s.io/v1/ClusterRole":        func() any { return &rbacv1.ClusterRole{} },
		"rbac.authorization.k8s.io/v1/ClusterRoleBinding": func() any { return &rbacv1.ClusterRoleBinding{} },
		"apps/v1/Deployment":                              func() any { return &appsv1.Deployment{} },
		"apps/v1/DaemonSet":                               func() any { return &appsv1.DaemonSet{} },
		"apps/v1/StatefulSet":                             func() any { return &appsv1.StatefulSet{} },
		"policy/v1/PodDisruptionBudget":                   func() any { return &policyv1.PodDisruptionBudget{} },
	}
	for _, name := range Names(renderings(t)) {
		objs := objects(t, name)
		for _, o := range objs {
			key := o.GetAPIVersion() + "/" + o.GetKind()
			if key == "monitoring.coreos.com/v1/ServiceMonitor" {
				continue // no Go type here; its fields are checked in TestRenderings
			}
			if key == "monitoring.coreos.com/v1/PrometheusRule" {
				// Its spec is a Prometheus rule file: Prometheus's own parser, strict, checks it.
				spec, _, _ := unstructured.NestedMap(o.Object, "spec")
				b, err := yaml.Marshal(spec)
				if err != nil {
					t.Fatal(err)
				}
				if _, errs := rulefmt.Parse(b, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler)); len(errs) > 0 {
					t.Errorf("%s: %s %s: %v", name, key, o.GetName(), errs)
				}
				continue
			}
			mk, ok := newTyped[key]
			if !ok {
				t.Errorf("%s: unexpected %s %s", name, key, o.GetName())
				continue
			}
			j, err := o.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.UnmarshalStrict(j, mk()); err != nil {
				t.Errorf("%s: %s %s: %v", name, key, o.GetName(), err)
			}
		}
	}
}

// The chart's configFile is a ConfigMap mounted where --config.file points, and its content is a
// file the relay's own reader (internal/promconfig) accepts.
func TestChartConfigFileIsPrometheusConfig(t *testing.T) {
	objs := objects(t, "chart/config-file")
	var cm *unstructured.Unstructured
	for _, o := range byKind(objs, "ConfigMap") {
		if strings.HasSuffix(o.GetName(), "-config") {
			cm = o
		}
	}
	if cm == nil {
		t.Fatal("no <fullname>-config ConfigMap")
	}
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	path := filepath.Join(t.TempDir(), "relay.yml")
	if err := os.WriteFile(path, []byte(data["relay.yml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := promconfig.Load(path, remotewrite.EndpointConfig{Timeout: 30 * time.Second, Queue: remotewrite.DefaultQueueConfig()})
	if err != nil {
		t.Fatalf("the chart's configFile does not load: %v\n%s", err, data["relay.yml"])
	}
	if len(f.Endpoints) != 1 || f.Endpoints[0].Name != "mimir" {
		t.Errorf("endpoints %+v, want the one named mimir", f.Endpoints)
	}
	deploy := byKind(objs, "Deployment")[0]
	mounts, _, _ := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "containers")
	found := false
	for _, m := range mounts[0].(map[string]any)["volumeMounts"].([]any) {
		if mm := m.(map[string]any); mm["name"] == "config" && mm["mountPath"] == "/etc/kubelet-meta-proxy/config" {
			found = true
		}
	}
	if !found {
		t.Error("the config ConfigMap is not mounted at /etc/kubelet-meta-proxy/config")
	}
}
