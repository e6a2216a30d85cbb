// Package deploy renders the relay's deployment manifests (the kustomize base, its overlays and components,
// the installer bundle and the Helm chart) with the pinned tools in bin/, for the tests here and for the
// e2e bed's server-side dry-run against a real kube-apiserver.
package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// InstallerImage is the image RenderAll asks `make build-installer` to set.
const InstallerImage = "example.com/kmp:v1"

// ReleaseNamespace is the namespace the chart is rendered into (the kustomize base's namespace).
const ReleaseNamespace = "kubelet-meta-proxy"

// Kustomization is one kustomize rendering: a directory under deploy/kustomize, optionally with components.
type Kustomization struct {
	Dir        string   // relative to deploy/kustomize, e.g. "overlays/daemonset"
	Components []string // names under deploy/kustomize/components
}

// Name is the key RenderAll uses: "kustomize/DIR[+COMPONENT...]".
func (k Kustomization) Name() string {
	return "kustomize/" + strings.Join(append([]string{k.Dir}, k.Components...), "+")
}

// Kustomizations lists what RenderAll builds: the base, every overlay, and each component in a combination
// it is meant for.
var Kustomizations = []Kustomization{
	{Dir: "base"},
	{Dir: "overlays/daemonset"},
	{Dir: "overlays/ha"},
	{Dir: "overlays/sharded"},
	{Dir: "base", Components: []string{"servicemonitor", "remote-write-secret"}},
	{Dir: "overlays/daemonset", Components: []string{"host-network", "remote-write-basic-auth"}},
	{Dir: "overlays/ha", Components: []string{"servicemonitor", "remote-write-basic-auth"}},
	{Dir: "overlays/sharded", Components: []string{"remote-write-secret", "servicemonitor"}},
	{Dir: "base", Components: []string{"servicemonitor", "mixin"}},
	{Dir: "base", Components: []string{"servicemonitor", "secure-metrics"}},
	{Dir: "overlays/daemonset", Components: []string{"secure-metrics"}},
	{Dir: "base", Components: []string{"pod-enrichment"}},
	{Dir: "overlays/daemonset", Components: []string{"pod-enrichment", "secure-metrics"}},
}

// ChartRendering is one `helm template` of dist/chart.
type ChartRendering struct {
	Name       string // the RenderAll key, "chart/NAME"
	ValuesFile string // relative to dist/chart, "" for the defaults
}

// ChartRenderings lists the chart renderings: the defaults and each dist/chart/ci/*-values.yaml.
var ChartRenderings = []ChartRendering{
	{Name: "chart/default"},
	{Name: "chart/kubelet", ValuesFile: "ci/kubelet-values.yaml"},
	{Name: "chart/ha", ValuesFile: "ci/ha-values.yaml"},
	{Name: "chart/sharded", ValuesFile: "ci/sharded-values.yaml"},
	{Name: "chart/openshift", ValuesFile: "ci/openshift-values.yaml"},
	{Name: "chart/config-file", ValuesFile: "ci/config-file-values.yaml"},
}

// Tool returns the path of bin/NAME under repoRoot, or an error that says to run `make tools`.
func Tool(repoRoot, name string) (string, error) {
	p := filepath.Join(repoRoot, "bin", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is missing: run `make tools` (it installs kustomize, helm and staticcheck into bin/ from the Go module proxy): %w", p, err)
	}
	return p, nil
}

func run(dir string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// Build renders one kustomization with bin/kustomize. With components, it writes a throw-away
// kustomization that references the directory and the components by relative paths.
func (k Kustomization) Build(repoRoot string) ([]byte, error) {
	kustomize, err := Tool(repoRoot, "kustomize")
	if err != nil {
		return nil, err
	}
	root := filepath.Join(repoRoot, "deploy", "kustomize")
	if len(k.Components) == 0 {
		return run(repoRoot, kustomize, "build", filepath.Join(root, k.Dir))
	}
	tmp, err := os.MkdirTemp("", "kmp-kustomize-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	rel := func(p string) (string, error) { return filepath.Rel(tmp, filepath.Join(root, p)) }
	var b strings.Builder
	b.WriteString("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n")
	r, err := rel(k.Dir)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(&b, "  - %s\ncomponents:\n", r)
	for _, c := range k.Components {
		r, err := rel(filepath.Join("components", c))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "  - %s\n", r)
	}
	if err := os.WriteFile(filepath.Join(tmp, "kustomization.yaml"), []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	return run(tmp, kustomize, "build", tmp)
}

// Template renders the chart with bin/helm into ReleaseNamespace as release "kubelet-meta-proxy".
func (c ChartRendering) Template(repoRoot string) ([]byte, error) {
	helm, err := Tool(repoRoot, "helm")
	if err != nil {
		return nil, err
	}
	chart := filepath.Join(repoRoot, "dist", "chart")
	args := []string{"template", "kubelet-meta-proxy", chart, "--namespace", ReleaseNamespace}
	if c.ValuesFile != "" {
		args = append(args, "--values", filepath.Join(chart, c.ValuesFile))
	}
	return run(repoRoot, helm, args...)
}

// BuildInstaller runs `make build-installer IMG=img` with its output in a temporary file and returns it.
func BuildInstaller(repoRoot, img string) ([]byte, error) {
	if _, err := Tool(repoRoot, "kustomize"); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "kmp-installer-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "install.yaml")
	if _, err := run(repoRoot, "make", "-s", "build-installer", "IMG="+img, "INSTALLER="+out); err != nil {
		return nil, err
	}
	return os.ReadFile(out)
}

// RenderAll renders every kustomization (Kustomizations), the installer bundle ("installer", with
// InstallerImage) and every chart rendering (ChartRenderings), and returns each rendering's multi-document
// YAML by name. It fails when bin/kustomize or bin/helm is missing (`make tools`).
func RenderAll(repoRoot string) (map[string][]byte, error) {
	out := map[string][]byte{}
	var errs []error
	for _, k := range Kustomizations {
		b, err := k.Build(repoRoot)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k.Name(), err))
			continue
		}
		out[k.Name()] = b
	}
	if b, err := BuildInstaller(repoRoot, InstallerImage); err != nil {
		errs = append(errs, fmt.Errorf("installer: %w", err))
	} else {
		out["installer"] = b
	}
	for _, c := range ChartRenderings {
		b, err := c.Template(repoRoot)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Name, err))
			continue
		}
		out[c.Name] = b
	}
	return out, errors.Join(errs...)
}

// Names returns the keys of a RenderAll result, sorted.
func Names(r map[string][]byte) []string {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Objects splits a multi-document YAML rendering into objects (empty documents dropped). Every object must
// have apiVersion, kind and metadata.name.
func Objects(rendering []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	for i, doc := range splitYAML(rendering) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if t := bytes.TrimSpace(j); bytes.Equal(t, []byte("null")) || bytes.Equal(t, []byte("{}")) {
			continue
		}
		// Unstructured's own JSON decoding keeps integers as int64 (as the API machinery expects).
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("document %d: %w\n%s", i, err, doc)
		}
		if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("document %d: apiVersion, kind or metadata.name missing:\n%s", i, doc)
		}
		objs = append(objs, u)
	}
	return objs, nil
}

// splitYAML splits at "---" document separators (lines that are exactly "---", as kustomize and helm write).
func splitYAML(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if t := bytes.TrimRight(line, " \r\n"); bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			docs = append(docs, append([]byte(nil), cur.Bytes()...))
			cur.Reset()
			continue
		}
		cur.Write(line)
	}
	return append(docs, cur.Bytes())
}
