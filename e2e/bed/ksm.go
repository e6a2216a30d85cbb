package bed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// KubeStateMetrics is kube-state-metrics run against the bed's kube-apiserver as admin, on
// 127.0.0.1.
type KubeStateMetrics struct {
	// URL serves /metrics (the Kubernetes object metrics); TelemetryURL its own metrics.
	URL, TelemetryURL string
	// Target is host:port of URL, for a scrape config.
	Target  string
	LogFile string
	p       *proc
}

// StartKubeStateMetrics starts bin/kube-state-metrics (hack/build-cortex.sh
// kube-state-metrics, or BuildExtra) with the bed's admin kubeconfig and waits until it
// serves metrics. Extra args go to kube-state-metrics (e.g. --resources=pods,namespaces).
func (b *Bed) StartKubeStateMetrics(ctx context.Context, args ...string) (*KubeStateMetrics, error) {
	bin, err := b.binary("kube-state-metrics")
	if err != nil {
		return nil, err
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	tport, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	kc := filepath.Join(b.Dir, "ksm.kubeconfig")
	if err := os.WriteFile(kc, []byte(b.Kubeconfig("admin", b.AdminToken)), 0o600); err != nil {
		return nil, err
	}
	k := &KubeStateMetrics{
		URL: fmt.Sprintf("http://127.0.0.1:%d", port), TelemetryURL: fmt.Sprintf("http://127.0.0.1:%d", tport),
		LogFile: b.logPath("kube-state-metrics"),
	}
	k.Target = strings.TrimPrefix(k.URL, "http://")
	k.p = b.newExtra("kube-state-metrics", bin, append([]string{
		"--kubeconfig=" + kc, "--host=127.0.0.1", fmt.Sprintf("--port=%d", port),
		"--telemetry-host=127.0.0.1", fmt.Sprintf("--telemetry-port=%d", tport),
	}, args...)...)
	if err := k.Start(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// Start starts a stopped kube-state-metrics again on the same ports; it waits until the
// telemetry port's /readyz and the metrics port's /healthz answer 200.
func (k *KubeStateMetrics) Start(ctx context.Context) error {
	if k.p.running() {
		return nil
	}
	if err := k.p.start(); err != nil {
		return err
	}
	ready, healthy := httpOK(httpClient, k.TelemetryURL+"/readyz", nil), httpOK(httpClient, k.URL+"/healthz", nil)
	return waitFor(ctx, "kube-state-metrics", 60*time.Second, k.p, func(ctx context.Context) error {
		if err := ready(ctx); err != nil {
			return err
		}
		return healthy(ctx)
	})
}

// Stop stops kube-state-metrics.
func (k *KubeStateMetrics) Stop() { k.p.stop(10 * time.Second) }

// Logs returns the last n lines of its log.
func (k *KubeStateMetrics) Logs(n int) string { return tail(k.LogFile, n) }

// ScrapeJob is the prometheus.yml scrape_configs entry for this
// kube-state-metrics, with honor_labels as kube-prometheus scrapes it (its
// namespace and pod labels are the objects', not the target's).
func (k *KubeStateMetrics) ScrapeJob() string {
	return fmt.Sprintf("- job_name: kube-state-metrics\n  honor_labels: true\n  static_configs:\n  - targets: [%q]\n", k.Target)
}

// PromOptions of an extra Prometheus server.
type PromOptions struct {
	// Name names its dir, log and storage (default prometheus-2, prometheus-3, ...).
	Name string
	// Config is the prometheus.yml without rule_files (global, scrape_configs, ...).
	Config string
	// RuleFiles maps a file name to its content; the bed writes them next to the config and
	// adds rule_files for them.
	RuleFiles map[string]string
	// RemoteWriteReceiver turns on /api/v1/write.
	RemoteWriteReceiver bool
}

// Prometheus is an extra Prometheus server (StartPrometheus2); the bed's own stays as it is.
type Prometheus struct {
	URL, RemoteWriteURL, Dir, LogFile string
	p                                 *proc
}

// StartPrometheus2 starts another Prometheus with the given config and rule files on a free
// 127.0.0.1 port, storage in b.Dir/<Name>, and waits until ready.
func (b *Bed) StartPrometheus2(ctx context.Context, opts PromOptions) (*Prometheus, error) {
	if opts.Name == "" {
		b.mu.Lock()
		opts.Name = fmt.Sprintf("prometheus-%d", len(b.extras)+2)
		b.mu.Unlock()
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.Dir, opts.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := strings.TrimRight(opts.Config, "\n") + "\n"
	if len(opts.RuleFiles) > 0 {
		cfg += "rule_files:\n"
		for name, content := range opts.RuleFiles {
			f := filepath.Join(dir, filepath.Base(name))
			if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
				return nil, err
			}
			cfg += fmt.Sprintf("- %q\n", f)
		}
	}
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	p := &Prometheus{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Dir: dir, LogFile: b.logPath(opts.Name)}
	args := []string{
		"--config.file=" + cfgFile, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--web.enable-lifecycle",
		"--storage.tsdb.retention.time=1d",
	}
	if opts.RemoteWriteReceiver {
		args = append(args, "--web.enable-remote-write-receiver")
		p.RemoteWriteURL = p.URL + "/api/v1/write"
	}
	p.p = b.newExtra(opts.Name, b.bin.prometheus, args...)
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Start starts a stopped Prometheus again (same port and storage) and waits until ready.
func (p *Prometheus) Start(ctx context.Context) error {
	if p.p.running() {
		return nil
	}
	if err := p.p.start(); err != nil {
		return err
	}
	return waitFor(ctx, p.p.name, 60*time.Second, p.p, httpOK(httpClient, p.URL+"/-/ready", nil))
}

// Stop stops it; the storage stays for Start.
func (p *Prometheus) Stop() { p.p.stop(30 * time.Second) }

// Query runs an instant query.
func (p *Prometheus) Query(ctx context.Context, q string) ([]Sample, error) {
	return queryAt(ctx, p.URL, nil, q)
}

// WaitQuery runs q every 500ms until cond accepts the result or timeout passes.
func (p *Prometheus) WaitQuery(ctx context.Context, q string, timeout time.Duration, cond func([]Sample) bool) ([]Sample, error) {
	return waitQuery(ctx, func(ctx context.Context) ([]Sample, error) { return p.Query(ctx, q) }, q, timeout, cond)
}
