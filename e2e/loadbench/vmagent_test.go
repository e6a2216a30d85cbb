package loadbench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	yaml "go.yaml.in/yaml/v2"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

type vmTestConfig struct {
	Global struct {
		ScrapeInterval string `yaml:"scrape_interval"`
		ScrapeTimeout  string `yaml:"scrape_timeout"`
	} `yaml:"global"`
	ScrapeConfigs []struct {
		JobName         string `yaml:"job_name"`
		Scheme          string `yaml:"scheme"`
		MetricsPath     string `yaml:"metrics_path"`
		HonorTimestamps bool   `yaml:"honor_timestamps"`
		BearerTokenFile string `yaml:"bearer_token_file"`
		TLSConfig       struct {
			InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
		} `yaml:"tls_config"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
		RelabelConfigs       []*relabel.Config `yaml:"relabel_configs"`
		MetricRelabelConfigs []*relabel.Config `yaml:"metric_relabel_configs"`
	} `yaml:"scrape_configs"`
}

// TestVMAgentScrapeConfig: vmagent gets the relay's targets, labels, interval, timeout,
// TLS and token settings, one job per kubelet path, each labelled job=kubelet; and, when
// bin/vmagent is built, vmagent itself accepts the file (-dryRun).
func TestVMAgentScrapeConfig(t *testing.T) {
	w := DefaultWorkload(3)
	teamOf := map[string]string{"kube-system": "platform"}
	for ns, ls := range w.NamespaceLabels() {
		teamOf[ns] = ls["team"]
	}
	targets := []VMScrapeTarget{{"node-a", "127.0.0.1:10250"}, {"node-b", "127.0.0.1:10251"}, {"node-c", "127.0.0.1:10252"}}
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		paths []string
		team  map[string]string
		jobs  []string
	}{
		{"cadvisor", nil, nil, []string{"kubelet"}},
		{"endpoints", []string{"/metrics/cadvisor", "/metrics", "/metrics/probes", "/metrics/resource"}, nil,
			[]string{"kubelet", "kubelet-metrics", "kubelet-probes", "kubelet-resource"}},
		{"relabel", nil, teamOf, []string{"kubelet"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := vmagentScrapeConfig(targets, VMScrapeOptions{Interval: 15 * time.Second, Timeout: 10 * time.Second,
				TokenFile: token, Paths: tc.paths, TeamOf: tc.team})
			if err != nil {
				t.Fatal(err)
			}
			var c vmTestConfig
			if err := yaml.UnmarshalStrict(b, &c); err != nil {
				t.Fatalf("%v\n%s", err, b)
			}
			if c.Global.ScrapeInterval != "15s" || c.Global.ScrapeTimeout != "10s" {
				t.Errorf("global %+v, want 15s/10s", c.Global)
			}
			if len(c.ScrapeConfigs) != len(tc.jobs) {
				t.Fatalf("%d scrape configs, want %d", len(c.ScrapeConfigs), len(tc.jobs))
			}
			paths := tc.paths
			if paths == nil {
				paths = []string{"/metrics/cadvisor"}
			}
			for i, sc := range c.ScrapeConfigs {
				if sc.JobName != tc.jobs[i] || sc.MetricsPath != paths[i] || sc.Scheme != "https" || !sc.HonorTimestamps ||
					sc.BearerTokenFile != token || !sc.TLSConfig.InsecureSkipVerify {
					t.Errorf("scrape config %d: %+v", i, sc)
				}
				if len(sc.StaticConfigs) != len(targets) {
					t.Fatalf("job %s: %d static configs, want %d", sc.JobName, len(sc.StaticConfigs), len(targets))
				}
				for j, st := range sc.StaticConfigs {
					want := map[string]string{"node": targets[j].Node, "metrics_path": paths[i], "service": "kubelet", "endpoint": "https-metrics"}
					if len(st.Targets) != 1 || st.Targets[0] != targets[j].Addr || !sameMap(st.Labels, want) {
						t.Errorf("job %s target %d: %v %v, want %s %v", sc.JobName, j, st.Targets, st.Labels, targets[j].Addr, want)
					}
				}
				// Every job's samples carry job=kubelet, as the relay's.
				ls, _ := relabelLabels(labels.FromStrings("job", sc.JobName), sc.RelabelConfigs)
				if got := ls.Get("job"); got != "kubelet" {
					t.Errorf("job %s: job label %q after relabeling, want kubelet", sc.JobName, got)
				}
				if tc.team == nil && len(sc.MetricRelabelConfigs) != 0 {
					t.Errorf("job %s: metric relabeling without -vmagent-relabel", sc.JobName)
				}
			}
			if tc.team != nil {
				checkTeamRules(t, c.ScrapeConfigs[0].MetricRelabelConfigs, tc.team)
			}
			vmagentDryRun(t, b)
		})
	}
}

// checkTeamRules applies the rules (Prometheus's relabeling, which vmagent's follows for
// these) to one series per namespace: the team is the namespace's, and a series without a
// known namespace gets none.
func checkTeamRules(t *testing.T, rules []*relabel.Config, teamOf map[string]string) {
	t.Helper()
	for _, r := range rules {
		if err := r.Validate(model.UTF8Validation); err != nil {
			t.Fatalf("rule %+v: %v", r, err)
		}
	}
	for ns, team := range teamOf {
		ls, keep := relabelLabels(labels.FromStrings("__name__", "container_cpu_usage_seconds_total", "namespace", ns), rules)
		if !keep || ls.Get("team") != team {
			t.Errorf("namespace %s: team %q (kept %v), want %q", ns, ls.Get("team"), keep, team)
		}
	}
	for _, ns := range []string{"", "ns-unknown", "ns-0001x"} {
		ls, _ := relabelLabels(labels.FromStrings("__name__", "machine_cpu_cores", "namespace", ns), rules)
		if ls.Has("team") {
			t.Errorf("namespace %q: team %q, want none", ns, ls.Get("team"))
		}
	}
}

func relabelLabels(ls labels.Labels, rules []*relabel.Config) (labels.Labels, bool) {
	lb := labels.NewBuilder(ls)
	keep := relabel.ProcessBuilder(lb, rules...)
	return lb.Labels(), keep
}

// vmagentDryRun checks the config with vmagent itself when bin/vmagent is built.
func vmagentDryRun(t *testing.T, conf []byte) {
	t.Helper()
	root, err := bed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin", "vmagent")
	if _, err := os.Stat(bin); err != nil {
		t.Log("bin/vmagent not built (hack/build-vmagent.sh): config not checked by vmagent")
		return
	}
	f := filepath.Join(t.TempDir(), "scrape.yaml")
	if err := os.WriteFile(f, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-dryRun", "-promscrape.config="+f, "-promscrape.config.strictParse").CombinedOutput()
	if err != nil {
		t.Errorf("vmagent -dryRun refused the config: %v\n%s", err, out)
	}
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestVMAgentSection: the ratios are relay over vmagent, and the targets are checked for
// enrichment on only.
func TestVMAgentSection(t *testing.T) {
	vm := &VMAgentResult{Version: "vmagent-test", Result: Result{Window: 60 * time.Second, Delivered: 1e7,
		CPU: 10 * time.Second, PeakRSS: 200 << 20}}
	relay := func(enrich bool, cpu time.Duration, rss int64) *Result {
		return &Result{Enrich: enrich, Window: 60 * time.Second, Delivered: 1e7, CPU: cpu, PeakRSS: rss, ViewHWMBefore: rss}
	}
	for _, tc := range []struct {
		name string
		r    *Result
		want string
	}{
		{"met", relay(true, 3*time.Second, 140<<20), "met"},
		{"just under", relay(true, 3400*time.Millisecond, 150<<20), "met"},
		{"cpu", relay(true, 4*time.Second, 100<<20), "MISSED: cpu"},
		{"rss", relay(true, 2*time.Second, 160<<20), "MISSED: rss"},
		{"both", relay(true, 6*time.Second, 300<<20), "MISSED: cpu,rss"},
		{"enrichment off", relay(false, 6*time.Second, 300<<20), " -"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := vmagentSection(Config{vmagent: vm}, []*Result{tc.r})
			var row string
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(strings.TrimSpace(l), "relay enrich") {
					row = l
				}
			}
			if !strings.HasSuffix(strings.TrimSpace(row), strings.TrimSpace(tc.want)) {
				t.Errorf("row %q, want it to end in %q\n%s", row, tc.want, out)
			}
			cpu := VMAgentRatio(tc.r.CPUPerMillion(), vm.CPUPerMillion())
			rss := VMAgentRatio(float64(tc.r.PeakRSS), float64(vm.PeakRSS))
			if want := tc.r.CPU.Seconds() / vm.CPU.Seconds(); !near(cpu, want) || !near(rss, float64(tc.r.PeakRSS)/float64(vm.PeakRSS)) {
				t.Errorf("ratios %.3f %.3f, want %.3f and relay/vmagent RSS", cpu, rss, want)
			}
		})
	}
	if got := vmagentSection(Config{}, nil); got != "" {
		t.Errorf("without vmagent: %q, want nothing", got)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// TestParseVMAgentMetrics: vmagent's own /metrics (captured from vmagent v1.151.0 scraping
// itself: no TYPE lines, histograms as vmrange buckets plus _sum and _count) reads as
// SelfMetrics, and every name the comparison uses is the sum of its lines.
func TestParseVMAgentMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "vmagent-1.151.0-metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseSelf(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vm_promscrape_scraped_samples_count", "vm_promscrape_scraped_samples_sum",
		"vmagent_remotewrite_rows_pushed_after_relabel_total", "vmagent_remotewrite_pending_data_bytes",
		"vm_promscrape_scrape_duration_seconds_count", "go_gc_duration_seconds_count", "vm_gogc", "go_memstats_heap_inuse_bytes"} {
		var want float64
		found := false
		for _, l := range strings.Split(string(b), "\n") {
			rest, ok := strings.CutPrefix(l, name)
			if !ok || (rest[0] != ' ' && rest[0] != '{') {
				continue
			}
			var v float64
			if _, err := fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v); err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			want += v
			found = true
		}
		if !found || m.Get(name) != want || want == 0 {
			t.Errorf("%s = %v, want %v (in the capture: %v)", name, m.Get(name), want, found)
		}
	}
}
