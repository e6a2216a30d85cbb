// Package relabeling holds metric relabeling configuration: Prometheus's
// metric_relabel_configs per kubelet endpoint, read from a YAML file or a
// shipped preset, with Prometheus's own types and semantics (model/relabel).
// It depends on no other package of the relay, so a Prometheus-style
// configuration file can embed its types.
package relabeling

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	yamlv2 "go.yaml.in/yaml/v2"
	yamlv3 "go.yaml.in/yaml/v3"
)

// Rules are metric relabel configs by endpoint name ("cadvisor", "metrics", ...).
type Rules map[string][]*relabel.Config

// Endpoints returns the endpoint names rules are given for, sorted.
func (r Rules) Endpoints() []string {
	out := make([]string, 0, len(r))
	for k := range r {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Merge returns a's rules followed by b's, per endpoint.
func Merge(a, b Rules) Rules {
	out := Rules{}
	for k, v := range a {
		out[k] = append(out[k], v...)
	}
	for k, v := range b {
		out[k] = append(out[k], v...)
	}
	return out
}

// FileError is an error in a relabel configuration file; it names the file
// and the line.
type FileError struct {
	File string
	Line int
	Err  error
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// ParseFile reads a relabel configuration file (see Parse).
func ParseFile(path string, endpoints []string) (Rules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path, endpoints)
}

// Parse reads a map from endpoint name to a list of Prometheus relabel
// configs (metric_relabel_configs syntax: source_labels, regex, action ...):
//
//	cadvisor:
//	- source_labels: [__name__]
//	  regex: container_tasks_state
//	  action: drop
//
// source names the input in errors; endpoints, if not nil, are the names
// allowed as keys. Every config is validated as Prometheus validates it,
// unknown fields are errors.
func Parse(data []byte, source string, endpoints []string) (Rules, error) {
	var root yamlv3.Node
	if err := yamlv3.Unmarshal(data, &root); err != nil {
		return nil, &FileError{File: source, Err: err}
	}
	out := Rules{}
	if len(root.Content) == 0 {
		return out, nil // empty file: no rules
	}
	doc := root.Content[0]
	if doc.Kind != yamlv3.MappingNode {
		return nil, &FileError{File: source, Line: doc.Line, Err: errors.New("want a map from endpoint name to a list of relabel configs")}
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i], doc.Content[i+1]
		name := k.Value
		if endpoints != nil && !slices.Contains(endpoints, name) {
			return nil, &FileError{File: source, Line: k.Line, Err: fmt.Errorf("unknown endpoint %q (want one of %s)", name, strings.Join(endpoints, ", "))}
		}
		if _, dup := out[name]; dup {
			return nil, &FileError{File: source, Line: k.Line, Err: fmt.Errorf("endpoint %q given twice", name)}
		}
		if v.Kind == yamlv3.ScalarNode && v.Tag == "!!null" {
			out[name] = nil
			continue
		}
		if v.Kind != yamlv3.SequenceNode {
			return nil, &FileError{File: source, Line: v.Line, Err: fmt.Errorf("endpoint %q: want a list of relabel configs", name)}
		}
		cfgs := make([]*relabel.Config, 0, len(v.Content))
		for _, item := range v.Content {
			c, err := parseConfig(item)
			if err != nil {
				return nil, &FileError{File: source, Line: item.Line, Err: fmt.Errorf("endpoint %q: %w", name, err)}
			}
			cfgs = append(cfgs, c)
		}
		out[name] = cfgs
	}
	return out, nil
}

// parseConfig decodes one relabel config strictly, as Prometheus reads its
// configuration file (yaml.v2, unknown fields rejected), and validates it.
func parseConfig(n *yamlv3.Node) (*relabel.Config, error) {
	if n.Kind != yamlv3.MappingNode {
		return nil, errors.New("want a relabel config (a map)")
	}
	b, err := yamlv3.Marshal(n)
	if err != nil {
		return nil, err
	}
	c := &relabel.Config{}
	if err := yamlv2.UnmarshalStrict(b, c); err != nil {
		return nil, err
	}
	if err := c.Validate(model.UTF8Validation); err != nil {
		return nil, err
	}
	return c, nil
}

// Process applies cfgs to lb; false means the series is dropped. An empty
// label set (every label relabelled away) is dropped too, as Prometheus does.
func Process(lb *labels.Builder, cfgs []*relabel.Config) bool {
	if !relabel.ProcessBuilder(lb, cfgs...) {
		return false
	}
	return lb.Get(model.MetricNameLabel) != "" || !lb.Labels().IsEmpty()
}

// PresetKubePrometheus is kube-prometheus's kubelet ServiceMonitor's metricRelabelings.
const PresetKubePrometheus = "kube-prometheus"

// Presets are the preset names there are.
var Presets = []string{PresetKubePrometheus}

//go:embed presets/kube-prometheus-kubelet-servicemonitor.yaml
var presetFS embed.FS

const kubePrometheusFile = "presets/kube-prometheus-kubelet-servicemonitor.yaml"

// Preset returns the rules of a shipped preset.
func Preset(name string) (Rules, error) {
	if name != PresetKubePrometheus {
		return nil, fmt.Errorf("unknown metric relabel preset %q (want one of %s)", name, strings.Join(Presets, ", "))
	}
	data, err := presetFS.ReadFile(kubePrometheusFile)
	if err != nil {
		return nil, err
	}
	return FromServiceMonitor(data, kubePrometheusFile)
}

// endpointOfPath names the kubelet endpoint a ServiceMonitor endpoint's path
// scrapes (no path is /metrics).
func endpointOfPath(path string) string {
	switch path {
	case "", "/metrics":
		return "metrics"
	default:
		return strings.TrimPrefix(path, "/metrics/")
	}
}

// FromServiceMonitor reads the metricRelabelings of every endpoint of a
// prometheus-operator ServiceMonitor, by kubelet endpoint name (from its
// path). The operator's fields are Prometheus's in camelCase, with the same
// defaults; they are renamed and decoded as Prometheus decodes them.
func FromServiceMonitor(data []byte, source string) (Rules, error) {
	var sm struct {
		Spec struct {
			Endpoints []struct {
				Path              string           `yaml:"path"`
				MetricRelabelings []map[string]any `yaml:"metricRelabelings"`
			} `yaml:"endpoints"`
		} `yaml:"spec"`
	}
	if err := yamlv2.Unmarshal(data, &sm); err != nil {
		return nil, &FileError{File: source, Err: err}
	}
	rename := map[string]string{"sourceLabels": "source_labels", "targetLabel": "target_label"}
	out := Rules{}
	for _, ep := range sm.Spec.Endpoints {
		name := endpointOfPath(ep.Path)
		for _, r := range ep.MetricRelabelings {
			m := make(map[string]any, len(r))
			for k, v := range r {
				if nk, ok := rename[k]; ok {
					k = nk
				}
				m[k] = v
			}
			b, err := yamlv2.Marshal(m)
			if err != nil {
				return nil, &FileError{File: source, Err: err}
			}
			c := &relabel.Config{}
			if err := yamlv2.UnmarshalStrict(b, c); err != nil {
				return nil, &FileError{File: source, Err: fmt.Errorf("endpoint %s: %w", name, err)}
			}
			if err := c.Validate(model.UTF8Validation); err != nil {
				return nil, &FileError{File: source, Err: fmt.Errorf("endpoint %s: %w", name, err)}
			}
			out[name] = append(out[name], c)
		}
	}
	return out, nil
}

// Marshal writes rules in the file format Parse reads.
func Marshal(r Rules) ([]byte, error) {
	var buf bytes.Buffer
	enc := yamlv2.NewEncoder(&buf)
	if err := enc.Encode(map[string][]*relabel.Config(r)); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}
