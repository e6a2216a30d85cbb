package relabeling

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	yamlv2 "go.yaml.in/yaml/v2"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/captures"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relabeling/relabelingtest"
)

var update = flag.Bool("update", false, "rewrite testdata/preset-savings.md")

var endpoints = []string{"cadvisor", "metrics", "probes", "resource"}

func TestParse(t *testing.T) {
	good := `cadvisor:
- source_labels: [__name__]
  regex: container_tasks_state
  action: drop
- action: labeldrop
  regex: id
metrics: []
probes:
`
	r, err := Parse([]byte(good), "good.yaml", endpoints)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Endpoints(); !reflect.DeepEqual(got, []string{"cadvisor", "metrics", "probes"}) {
		t.Fatalf("endpoints %v", got)
	}
	c := r["cadvisor"][0]
	if c.Action != relabel.Drop || c.Regex.String() != "container_tasks_state" || c.Separator != ";" || c.Replacement != "$1" {
		t.Fatalf("defaults not applied as Prometheus applies them: %+v", c)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"unknown endpoint", "cadvisor: []\nslis:\n- action: drop\n", `bad.yaml:2: unknown endpoint "slis"`},
		{"unknown field", "cadvisor:\n- action: drop\n  regex: x\n- sourceLabels: [__name__]\n  action: drop\n", "bad.yaml:4: endpoint \"cadvisor\": "},
		{"bad action", "metrics:\n\n- action: dropit\n", "bad.yaml:3: endpoint \"metrics\": unknown relabel action"},
		{"bad regex", "probes:\n- action: drop\n  regex: '('\n", "bad.yaml:2: endpoint \"probes\": error parsing regexp"},
		{"replace without target", "resource:\n- action: replace\n", "bad.yaml:2: endpoint \"resource\": relabel configuration for replace action requires 'target_label'"},
		{"not a map", "- cadvisor\n", "bad.yaml:1: want a map"},
		{"not a list", "cadvisor: drop\n", "bad.yaml:1: endpoint \"cadvisor\": want a list"},
		{"twice", "cadvisor: []\ncadvisor: []\n", "bad.yaml:2: endpoint \"cadvisor\" given twice"},
		{"bad yaml", "cadvisor: [\n", "bad.yaml"},
	} {
		_, err := Parse([]byte(tc.in), "bad.yaml", endpoints)
		var fe *FileError
		if err == nil || !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
	if r, err := Parse(nil, "empty.yaml", endpoints); err != nil || len(r) != 0 {
		t.Errorf("empty file: %v %v", r, err)
	}
}

// The preset is kube-prometheus's metricRelabelings: every field of every
// rule, as the ServiceMonitor writes it.
func TestPresetIsKubePrometheus(t *testing.T) {
	r, err := Preset(PresetKubePrometheus)
	if err != nil {
		t.Fatal(err)
	}
	data, err := presetFS.ReadFile(kubePrometheusFile)
	if err != nil {
		t.Fatal(err)
	}
	var sm struct {
		Spec struct {
			Endpoints []struct {
				Path              string `yaml:"path"`
				MetricRelabelings []struct {
					Action       string   `yaml:"action"`
					Regex        string   `yaml:"regex"`
					SourceLabels []string `yaml:"sourceLabels"`
				} `yaml:"metricRelabelings"`
			} `yaml:"endpoints"`
		} `yaml:"spec"`
	}
	if err := yamlv2.Unmarshal(data, &sm); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ep := range sm.Spec.Endpoints {
		name := endpointOfPath(ep.Path)
		for i, want := range ep.MetricRelabelings {
			got := r[name][i]
			var src []string
			for _, l := range got.SourceLabels {
				src = append(src, string(l))
			}
			if string(got.Action) != want.Action || got.Regex.String() != want.Regex || !reflect.DeepEqual(src, want.SourceLabels) ||
				got.Separator != ";" || got.TargetLabel != "" {
				t.Errorf("%s rule %d: %+v, want %+v", name, i, got, want)
			}
			n++
		}
		if len(r[name]) != len(ep.MetricRelabelings) {
			t.Errorf("%s: %d rules, want %d", name, len(r[name]), len(ep.MetricRelabelings))
		}
	}
	if n != 12 { // 8 on /metrics, 3 on /metrics/cadvisor, 1 on /metrics/slis
		t.Errorf("%d rules, want 12", n)
	}
}

// The shipped ServiceMonitor is the shared fixture, byte for byte.
func TestPresetMatchesFixture(t *testing.T) {
	fixture, err := os.ReadFile("../../../shared/fixtures/kube-prometheus/kubernetesControlPlane-serviceMonitorKubelet.yaml")
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("no ../shared/fixtures here")
	}
	if err != nil {
		t.Fatal(err)
	}
	shipped, _ := presetFS.ReadFile(kubePrometheusFile)
	if string(fixture) != string(shipped) {
		t.Fatal("presets/kube-prometheus-kubelet-servicemonitor.yaml differs from the kube-prometheus fixture")
	}
}

// TestPresetSavings computes what the kube-prometheus preset drops from the
// real and generated captures; docs/kube-prometheus.md shows the table.
func TestPresetSavings(t *testing.T) {
	r, err := Preset(PresetKubePrometheus)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("| capture | endpoint | series | dropped by the preset | kept |\n|---|---|---|---|---|\n")
	rows := []struct{ capture, endpoint string }{
		{"1_35", "cadvisor"}, {"1_28", "cadvisor"}, {"1_16", "cadvisor"}, {"gke-2018", "cadvisor"},
		{"kubelet-metrics", "metrics"}, {"probes-1_35", "probes"}, {"resource-1_35", "resource"},
	}
	target := labels.FromStrings("job", "kubelet", "instance", "198.18.0.10:10250")
	for _, row := range rows {
		body, err := captures.Read(row.capture)
		if err != nil {
			t.Fatal(err)
		}
		kept, total, err := relabelingtest.KeptSeries(body, target, r[row.endpoint])
		if err != nil {
			t.Fatal(err)
		}
		name := captures.Files[row.capture]
		if name == "" {
			name = captures.Generated[row.capture]
		}
		dropped := total - len(kept)
		fmt.Fprintf(&b, "| `%s` | %s | %d | %d (%.1f%%) | %d |\n", name, row.endpoint, total, dropped, 100*float64(dropped)/float64(total), len(kept))
	}
	golden := filepath.Join("testdata", "preset-savings.md")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != b.String() {
		t.Fatalf("savings differ from %s (go test -update after checking):\n%s", golden, b.String())
	}
	doc, err := os.ReadFile("../../docs/kube-prometheus.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), b.String()) {
		t.Fatalf("docs/kube-prometheus.md does not show the computed table:\n%s", b.String())
	}
}
