package fakekubelet

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/captures"
)

// countTextparse parses an exposition with Prometheus's own scrape parser and returns the
// samples it read; every line must parse.
func countTextparse(t *testing.T, name string, data []byte) int {
	t.Helper()
	p, err := textparse.New(data, "text/plain; version=0.0.4", labels.NewSymbolTable(), textparse.ParserOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		e, err := p.Next()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("%s: textparse after %d samples: %v", name, n, err)
		}
		if e == textparse.EntrySeries {
			n++
		}
	}
}

func TestGeneratedCapturesParse(t *testing.T) {
	for short := range captures.Generated {
		t.Run(short, func(t *testing.T) {
			data, err := ReadCapture(short)
			if err != nil {
				t.Fatal(err)
			}
			lines := 0
			for _, l := range strings.Split(string(data), "\n") {
				if l != "" && l[0] != '#' {
					lines++
				}
			}
			if got := countTextparse(t, short, data); got != lines || lines == 0 {
				t.Fatalf("textparse read %d samples, file has %d sample lines", got, lines)
			}
			// And after the per-node rewrite.
			c, err := Prepare(data, RewriteOptions{Namespaces: bedNamespaces})
			if err != nil {
				t.Fatal(err)
			}
			if got := countTextparse(t, short, c.AppendTo(nil, time.Now())); got != lines {
				t.Fatalf("rewritten: %d samples, want %d", got, lines)
			}
		})
	}
}

func families(t *testing.T, data []byte) map[string][]sampleVal {
	t.Helper()
	tp := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := tp.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]sampleVal{}
	for name, f := range fams {
		for _, m := range f.Metric {
			l := map[string]string{}
			for _, p := range m.Label {
				l[p.GetName()] = p.GetValue()
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			out[name] = append(out[name], sampleVal{labels: l, v: v, ts: m.GetTimestampMs()})
		}
	}
	return out
}

type sampleVal struct {
	labels map[string]string
	v      float64
	ts     int64
}

// The resource endpoint was generated from the 1.35 cAdvisor capture: its numbers are the
// capture's, looked up here in the capture itself.
func TestResourceAgreesWithCAdvisor(t *testing.T) {
	cad, err := ReadCapture("1_35")
	if err != nil {
		t.Fatal(err)
	}
	res, err := ReadCapture("resource-1_35")
	if err != nil {
		t.Fatal(err)
	}
	cf, rf := families(t, cad), families(t, res)
	type key struct{ name, container, pod, ns, id string }
	byKey := map[key]sampleVal{}
	for _, name := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_start_time_seconds"} {
		for _, s := range cf[name] {
			byKey[key{name, s.labels["container"], s.labels["pod"], s.labels["namespace"], ""}] = s
			byKey[key{name, "", "", "", s.labels["id"]}] = s
		}
	}
	check := func(what string, got sampleVal, k key, wantTS bool) {
		t.Helper()
		want, ok := byKey[k]
		if !ok {
			t.Fatalf("%s: no cAdvisor series %+v", what, k)
		}
		if d := got.v - want.v; d > 1e-6*max(1, want.v) || d < -1e-6*max(1, want.v) {
			t.Fatalf("%s: %v, cAdvisor %v", what, got.v, want.v)
		}
		if wantTS && got.ts != want.ts {
			t.Fatalf("%s: timestamp %d, cAdvisor %d", what, got.ts, want.ts)
		}
	}
	containers := 0
	for _, name := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_start_time_seconds"} {
		for _, s := range rf[name] {
			l := s.labels
			check(name+" "+l["pod"]+"/"+l["container"], s, key{name, l["container"], l["pod"], l["namespace"], ""}, name != "container_start_time_seconds")
			containers++
		}
	}
	// Every application container of the capture (container != "", not a sandbox) is there.
	want := 0
	for _, s := range cf["container_cpu_usage_seconds_total"] {
		if s.labels["container"] != "" {
			want++
		}
	}
	if got := len(rf["container_cpu_usage_seconds_total"]); got != want || want == 0 {
		t.Fatalf("resource has %d containers, cAdvisor %d", got, want)
	}
	check("node cpu", rf["node_cpu_usage_seconds_total"][0], key{"container_cpu_usage_seconds_total", "", "", "", "/"}, true)
	check("node memory", rf["node_memory_working_set_bytes"][0], key{"container_memory_working_set_bytes", "", "", "", "/"}, true)
	// Pod figures are the pod cgroup's: the cgroup whose id ends in pod<uid> of that pod.
	pods := 0
	for _, s := range rf["pod_cpu_usage_seconds_total"] {
		for _, c := range cf["container_cpu_usage_seconds_total"] {
			id := c.labels["id"]
			if c.labels["pod"] == s.labels["pod"] && c.labels["container"] == "" && strings.Contains(id[strings.LastIndex(id, "/"):], "/pod") {
				check("pod cpu "+s.labels["pod"], s, key{"container_cpu_usage_seconds_total", "", "", "", id}, true)
				pods++
			}
		}
	}
	if pods == 0 || pods != len(rf["pod_cpu_usage_seconds_total"]) {
		t.Fatalf("checked %d of %d pods", pods, len(rf["pod_cpu_usage_seconds_total"]))
	}
	t.Logf("%d container samples, %d pods agree with the cAdvisor capture", containers, pods)
}

// Every endpoint of one node puts a pod into the same namespace.
func TestEndpointsShareNamespaces(t *testing.T) {
	s, err := New(Config{NodeName: "n1", Namespaces: bedNamespaces, Offset: 2})
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*Capture{"resource": s.resource, "probes": s.probes} {
		if len(c.PodNamespaces) == 0 {
			t.Fatalf("%s: no pods", name)
		}
		for k, ns := range c.PodNamespaces {
			if want, ok := s.cadvisor.PodNamespaces[k]; !ok || want != ns {
				t.Fatalf("%s: pod %s in %q, cadvisor puts it in %q", name, k, ns, want)
			}
		}
		// The rewritten text carries the mapped namespaces.
		out := string(c.AppendTo(nil, time.Now()))
		for _, ns := range bedNamespaces {
			if !strings.Contains(out, `namespace="`+ns+`"`) {
				t.Fatalf("%s: namespace %s got no series", name, ns)
			}
		}
		if strings.Contains(out, `namespace="scraper"`) || strings.Contains(out, `namespace="kube-system"`) {
			t.Fatalf("%s: capture namespace left", name)
		}
	}
}

func TestSubresources(t *testing.T) {
	for _, tc := range []struct {
		path string
		want string
	}{
		{"/metrics", "[metrics]"},
		{"/metrics/cadvisor", "[metrics]"},
		{"/metrics/resource", "[metrics]"},
		{"/metrics/probes", "[metrics]"},
		{"/metricsx", "[proxy]"},
		{"/pods", "[pods proxy]"},
		{"/pods/", "[pods proxy]"},
		{"/healthz", "[healthz proxy]"},
		{"/stats/summary", "[stats]"},
		{"/logs/x", "[log]"},
		{"/exec/ns/pod/c", "[proxy]"},
		{"/configz", "[configz proxy]"},
	} {
		if got := strings.Join(strings.Fields(strings.Trim(strings.Join(subresources(tc.path), " "), "[]")), " "); "["+got+"]" != tc.want {
			t.Errorf("%s: %s, want %s", tc.path, got, tc.want)
		}
	}
}

// /metrics carries the generated volume stats, each claim in the namespace its StatefulSet
// pod's cAdvisor series are served in (the claim's team is the pod's).
func TestMetricsHasVolumeStatsInThePodsNamespace(t *testing.T) {
	for offset := 0; offset < 3; offset++ {
		s, err := New(Config{NodeName: "n", Namespaces: bedNamespaces, Offset: offset})
		if err != nil {
			t.Fatal(err)
		}
		body := s.metrics.AppendTo(nil, time.Now())
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		used := fams["kubelet_volume_stats_used_bytes"].GetMetric()
		if len(used) != 2 {
			t.Fatalf("offset %d: %d kubelet_volume_stats_used_bytes series, want 2", offset, len(used))
		}
		if fams["kubelet_running_pod_count"] == nil {
			t.Fatalf("offset %d: the kubelet capture is gone from /metrics", offset)
		}
		for _, m := range used {
			l := map[string]string{}
			for _, p := range m.Label {
				l[p.GetName()] = p.GetValue()
			}
			pod := strings.TrimPrefix(l["persistentvolumeclaim"], "data-")
			if want := s.cadvisor.PodNamespaces["scraper/"+pod]; want == "" || l["namespace"] != want {
				t.Errorf("offset %d: claim %s in namespace %q, its pod in %q", offset, l["persistentvolumeclaim"], l["namespace"], want)
			}
		}
	}
}
