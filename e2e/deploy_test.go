package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/deploy"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// deployFieldManager is the server-side apply field manager of the dry runs.
const deployFieldManager = "kmp-e2e-deploy-dry-run"

// serviceMonitorCRD is a minimal but valid prometheus-operator ServiceMonitor CRD (monitoring.coreos.com/v1):
// the fields the renderings use are typed as upstream types them (so a wrong type or value is rejected),
// everything else is preserved.
const serviceMonitorCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names:
    kind: ServiceMonitor
    listKind: ServiceMonitorList
    plural: servicemonitors
    singular: servicemonitor
    shortNames: [smon]
    categories: [prometheus-operator]
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            metadata: {type: object}
            spec:
              type: object
              required: [selector]
              x-kubernetes-preserve-unknown-fields: true
              properties:
                jobLabel: {type: string}
                selector:
                  type: object
                  x-kubernetes-map-type: atomic
                  properties:
                    matchLabels:
                      type: object
                      additionalProperties: {type: string}
                    matchExpressions:
                      type: array
                      items:
                        type: object
                        required: [key, operator]
                        properties:
                          key: {type: string}
                          operator: {type: string}
                          values:
                            type: array
                            items: {type: string}
                namespaceSelector:
                  type: object
                  properties:
                    any: {type: boolean}
                    matchNames:
                      type: array
                      items: {type: string}
                endpoints:
                  type: array
                  items:
                    type: object
                    x-kubernetes-preserve-unknown-fields: true
                    properties:
                      port: {type: string}
                      targetPort: {x-kubernetes-int-or-string: true}
                      path: {type: string}
                      scheme: {type: string, enum: [http, https, HTTP, HTTPS]}
                      interval:
                        type: string
                        pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'
                      scrapeTimeout:
                        type: string
                        pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'
                      honorLabels: {type: boolean}
                      honorTimestamps: {type: boolean}
            status:
              type: object
              x-kubernetes-preserve-unknown-fields: true
`

// warnings records the API server's Warning headers (client-go calls the handler once per warning).
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

// take returns the warnings since the last take and forgets them.
func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

// deployApplier server-side applies objects with dryRun=All.
type deployApplier struct {
	dyn    dynamic.Interface
	mapper meta.RESTMapper
	warn   *warnings
}

// apply server-side applies obj with dryRun=All (force, strict field validation) and returns the namespace it
// went to ("" for cluster-scoped) and the warnings the API server sent with the response.
func (a *deployApplier) apply(ctx context.Context, obj *unstructured.Unstructured, defaultNS string) (string, []string, error) {
	gvk := obj.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return "", nil, fmt.Errorf("no resource for %s: %w", gvk, err)
	}
	obj = obj.DeepCopy()
	var ri dynamic.ResourceInterface
	ns := ""
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns = obj.GetNamespace()
		if ns == "" {
			ns = defaultNS
			obj.SetNamespace(ns)
		}
		ri = a.dyn.Resource(m.Resource).Namespace(ns)
	} else {
		if obj.GetNamespace() != "" {
			return "", nil, fmt.Errorf("cluster-scoped %s has metadata.namespace %q", gvk.Kind, obj.GetNamespace())
		}
		ri = a.dyn.Resource(m.Resource)
	}
	body, err := json.Marshal(obj.Object) // JSON is YAML: the body of an application/apply-patch+yaml PATCH
	if err != nil {
		return ns, nil, err
	}
	force := true
	a.warn.take()
	_, err = ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
		DryRun:          []string{metav1.DryRunAll},
		FieldManager:    deployFieldManager,
		Force:           &force,
		FieldValidation: metav1.FieldValidationStrict,
	})
	return ns, a.warn.take(), err
}

// isAPIRefusal reports whether err is the API server's answer refusing a request (not a transport error):
// validation gives 422 Invalid, strict field validation 400, and server-side apply's typed patch (unknown field,
// wrong type against the schema) a 500 with the field in the message.
func isAPIRefusal(err error) bool {
	s, ok := err.(apierrors.APIStatus)
	if !ok {
		return false
	}
	code := s.Status().Code
	return code >= 400 && code != 401 && code != 403 && code != 404 && code != 409
}

func objectRef(kind, ns, name string) string {
	if ns == "" {
		return kind + "/" + name
	}
	return kind + "/" + ns + "/" + name
}

// prometheusRuleCRD is a minimal but valid prometheus-operator PrometheusRule CRD (monitoring.coreos.com/v1),
// with spec.groups typed as upstream types them (the mixin's alerts in components/mixin and the chart's
// prometheusRule).
const prometheusRuleCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: prometheusrules.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names:
    kind: PrometheusRule
    listKind: PrometheusRuleList
    plural: prometheusrules
    singular: prometheusrule
    shortNames: [promrule]
    categories: [prometheus-operator]
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            metadata: {type: object}
            spec:
              type: object
              properties:
                groups:
                  type: array
                  x-kubernetes-list-type: map
                  x-kubernetes-list-map-keys: [name]
                  items:
                    type: object
                    required: [name]
                    properties:
                      name: {type: string, minLength: 1}
                      interval: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      limit: {type: integer}
                      rules:
                        type: array
                        items:
                          type: object
                          required: [expr]
                          properties:
                            alert: {type: string}
                            record: {type: string}
                            expr: {x-kubernetes-int-or-string: true}
                            for: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                            keep_firing_for: {type: string, minLength: 1}
                            labels:
                              type: object
                              additionalProperties: {type: string}
                            annotations:
                              type: object
                              additionalProperties: {type: string}
`

// installServiceMonitorCRD creates the ServiceMonitor CRD for real (deleted at the end of the test) and waits
// until it is Established.
func installServiceMonitorCRD(t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	installCRD(t, dyn, "ServiceMonitor", serviceMonitorCRD)
}

// installCRD creates a CRD for real (deleted at the end of the test) and waits until it is Established.
func installCRD(t *testing.T, dyn dynamic.Interface, kind, text string) {
	t.Helper()
	ctx := t.Context()
	crd := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(text), &crd.Object); err != nil {
		t.Fatalf("%s CRD: %v", kind, err)
	}
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	if _, err := crds.Create(ctx, crd, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create %s CRD: %v", kind, err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := crds.Delete(ctx, crd.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %s CRD: %v", kind, err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := crds.Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conds {
				cm, _ := c.(map[string]any)
				if cm["type"] == "Established" && cm["status"] == "True" {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s CRD not Established after 30s: %v %v", kind, err, got)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// newDeployApplier builds the dynamic client and a RESTMapper from discovery; it waits until discovery
// serves every kind in want (the CRD's kinds appear there a moment after Established).
func newDeployApplier(t *testing.T, admin *rest.Config, want []schema.GroupVersionKind) *deployApplier {
	t.Helper()
	cfg := rest.CopyConfig(admin)
	w := &warnings{}
	cfg.WarningHandler = w
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		groups, err := restmapper.GetAPIGroupResources(disc)
		var missing []string
		if err == nil {
			mapper := restmapper.NewDiscoveryRESTMapper(groups)
			for _, gvk := range want {
				if _, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
					missing = append(missing, gvk.String())
				}
			}
			if len(missing) == 0 {
				return &deployApplier{dyn: dyn, mapper: mapper, warn: w}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("discovery after 30s: error %v; kinds not served: %v", err, missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDeployServerSideDryRun applies every object of every rendering of deploy.RenderAll (kustomize base,
// overlays and components, the installer bundle, the Helm chart with each values file) to the bed's
// kube-apiserver with a server-side apply dry run (dryRun=All, strict field validation), so that the API
// server validates each of them (the ServiceMonitors against a real ServiceMonitor CRD). Broken copies
// show that the dry runs do validate.
func TestDeployServerSideDryRun(t *testing.T) {
	b := needBed(t)
	ctx := t.Context()
	root, err := bed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"kustomize", "helm"} {
		if _, err := deploy.Tool(root, tool); err != nil {
			t.Fatalf("%v (the Makefile's test target depends on tools)", err)
		}
	}
	renders, err := deploy.RenderAll(root)
	if err != nil {
		t.Fatalf("deploy.RenderAll: %v", err)
	}
	wantNames := []string{"installer"}
	for _, k := range deploy.Kustomizations {
		wantNames = append(wantNames, k.Name())
	}
	for _, c := range deploy.ChartRenderings {
		wantNames = append(wantNames, c.Name)
	}
	for _, n := range wantNames {
		if len(renders[n]) == 0 {
			t.Errorf("rendering %s missing or empty (got %v)", n, deploy.Names(renders))
		}
	}
	if len(renders) != len(wantNames) {
		t.Errorf("RenderAll returned %d renderings %v, want %d %v", len(renders), deploy.Names(renders), len(wantNames), wantNames)
	}

	objects := map[string][]*unstructured.Unstructured{}
	kinds := map[schema.GroupVersionKind]bool{}
	for _, name := range deploy.Names(renders) {
		objs, err := deploy.Objects(renders[name])
		if err != nil {
			t.Fatalf("rendering %s: %v", name, err)
		}
		if len(objs) == 0 {
			t.Fatalf("rendering %s: no objects", name)
		}
		objects[name] = objs
		for _, o := range objs {
			kinds[o.GroupVersionKind()] = true
		}
	}
	smGVK := schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}
	if !kinds[smGVK] {
		t.Fatalf("no rendering has a %s: the CRD-backed validation would prove nothing", smGVK)
	}

	admin := rest.CopyConfig(b.Admin)
	crdDyn, err := dynamic.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	installServiceMonitorCRD(t, crdDyn)
	installCRD(t, crdDyn, "PrometheusRule", prometheusRuleCRD)
	var want []schema.GroupVersionKind
	for gvk := range kinds {
		want = append(want, gvk)
	}
	a := newDeployApplier(t, admin, want)

	// Every object of every rendering.
	total := 0
	perKind := map[string]int{}
	for _, name := range deploy.Names(renders) {
		for _, o := range objects[name] {
			ns, warns, err := a.apply(ctx, o, deploy.ReleaseNamespace)
			ref := objectRef(o.GetKind(), ns, o.GetName())
			if err != nil {
				t.Errorf("rendering %s: %s (%s): the API server refused the dry-run apply: %v", name, ref, o.GetAPIVersion(), err)
				continue
			}
			for _, w := range warns {
				t.Logf("rendering %s: %s: API server warning: %s", name, ref, w)
			}
			total++
			perKind[o.GetKind()]++
		}
	}
	var summary []string
	for k, n := range perKind {
		summary = append(summary, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(summary)
	t.Logf("dry-run applied %d objects of %d renderings: %s", total, len(renders), strings.Join(summary, " "))

	// A dry run stores nothing: the relay's workload and the ServiceMonitor do not exist afterwards.
	if _, err := b.Client.AppsV1().Deployments(deploy.ReleaseNamespace).Get(ctx, "kubelet-meta-proxy", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Deployment %s/kubelet-meta-proxy after the dry runs: want NotFound, got %v", deploy.ReleaseNamespace, err)
	}
	smRes := schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "servicemonitors"}
	if l, err := a.dyn.Resource(smRes).Namespace(deploy.ReleaseNamespace).List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Errorf("ServiceMonitors after the dry runs: want none, got %v %v", l, err)
	}

	// The dry runs do validate: broken copies of rendered objects are refused, each for its own reason.
	find := func(kind string) *unstructured.Unstructured {
		for _, name := range deploy.Names(renders) {
			for _, o := range objects[name] {
				if o.GetKind() == kind {
					return o.DeepCopy()
				}
			}
		}
		t.Fatalf("no rendering has a %s", kind)
		return nil
	}
	broken := []struct {
		name   string
		kind   string
		mutate func(o *unstructured.Unstructured) error
		want   string // in the API server's message
	}{
		{"negative replicas", "Deployment", func(o *unstructured.Unstructured) error {
			return unstructured.SetNestedField(o.Object, int64(-1), "spec", "replicas")
		}, "spec.replicas"},
		{"container without image", "Deployment", func(o *unstructured.Unstructured) error {
			cs, _, err := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			if err != nil || len(cs) == 0 {
				return fmt.Errorf("no containers: %v", err)
			}
			delete(cs[0].(map[string]any), "image")
			return unstructured.SetNestedSlice(o.Object, cs, "spec", "template", "spec", "containers")
		}, "image"},
		{"unknown field", "Deployment", func(o *unstructured.Unstructured) error {
			return unstructured.SetNestedField(o.Object, int64(1), "spec", "replicaz")
		}, "replicaz"},
		{"ServiceMonitor honorLabels not a boolean", "ServiceMonitor", func(o *unstructured.Unstructured) error {
			eps, _, err := unstructured.NestedSlice(o.Object, "spec", "endpoints")
			if err != nil || len(eps) == 0 {
				return fmt.Errorf("no endpoints: %v", err)
			}
			eps[0].(map[string]any)["honorLabels"] = "yes"
			return unstructured.SetNestedSlice(o.Object, eps, "spec", "endpoints")
		}, "honorLabels"},
		{"ServiceMonitor without selector", "ServiceMonitor", func(o *unstructured.Unstructured) error {
			unstructured.RemoveNestedField(o.Object, "spec", "selector")
			return nil
		}, "selector"},
		{"PrometheusRule alert with a bad for", "PrometheusRule", func(o *unstructured.Unstructured) error {
			groups, _, err := unstructured.NestedSlice(o.Object, "spec", "groups")
			if err != nil || len(groups) == 0 {
				return fmt.Errorf("no groups: %v", err)
			}
			rules, _ := groups[0].(map[string]any)["rules"].([]any)
			if len(rules) == 0 {
				return fmt.Errorf("no rules")
			}
			rules[0].(map[string]any)["for"] = "five minutes"
			return unstructured.SetNestedSlice(o.Object, groups, "spec", "groups")
		}, "for"},
	}
	for _, c := range broken {
		o := find(c.kind)
		if err := c.mutate(o); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		ns, _, err := a.apply(ctx, o, deploy.ReleaseNamespace)
		ref := objectRef(o.GetKind(), ns, o.GetName())
		switch {
		case err == nil:
			t.Errorf("%s: dry-run apply of a broken %s succeeded: the API server did not validate it", c.name, ref)
		case !isAPIRefusal(err):
			t.Errorf("%s: broken %s: want the API server's refusal, got %v (%T)", c.name, ref, err, err)
		case !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: broken %s refused, but the message does not mention %q: %v", c.name, ref, c.want, err)
		default:
			t.Logf("%s: broken %s refused as expected: %v", c.name, ref, err)
		}
	}
}
