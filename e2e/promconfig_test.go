package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// promConfigReceiver is a remote-write endpoint that records the tenant header of the last request, the
// metric metadata and the metric names it got.
type promConfigReceiver struct {
	down     atomic.Bool // answer 503
	mu       sync.Mutex
	tenant   string
	metadata map[string]prompb.MetricMetadata
	names    map[string]int
}

func (r *promConfigReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if r.down.Load() {
		http.Error(w, "down for the test", http.StatusServiceUnavailable)
		return
	}
	raw, err := snappy.Decode(nil, body)
	var wr prompb.WriteRequest
	if err == nil {
		err = wr.Unmarshal(raw)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tenant = req.Header.Get("X-Scope-OrgID")
	for _, m := range wr.Metadata {
		r.metadata[m.MetricFamilyName] = m
	}
	for _, ts := range wr.Timeseries {
		for _, l := range ts.Labels {
			if l.Name == "__name__" {
				r.names[l.Value] += len(ts.Samples)
			}
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *promConfigReceiver) state() (tenant string, md map[string]prompb.MetricMetadata, names map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	md, names = map[string]prompb.MetricMetadata{}, map[string]int{}
	for k, v := range r.metadata {
		md[k] = v
	}
	for k, v := range r.names {
		names[k] = v
	}
	return r.tenant, md, names
}

// TestPromConfigFile runs the relay with a Prometheus-style --config.file: external labels from global,
// two remote_write entries (the bed's Prometheus with write_relabel_configs keeping two families; a local
// receiver with a tenant header and metadata every 2s), and its self-metrics sent through remote write.
// Then the file changes and is reloaded by POST /-/reload and by SIGHUP; a broken file is refused and the
// relay keeps its configuration. Last, the local receiver goes down: the mixin's drops alert expression
// (window shortened) finds the drops in the bed's Prometheus, which has them only through the relay's
// self-metrics sent by remote write (a Prometheus-less, Mimir-only user's view), and clears once the
// receiver is back. ~1 min.
func TestPromConfigFile(t *testing.T) {
	b := needBed(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	rcv := &promConfigReceiver{metadata: map[string]prompb.MetricMetadata{}, names: map[string]int{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()

	dir := t.TempDir()
	file := filepath.Join(dir, "relay.yml")
	write := func(tenant string) {
		t.Helper()
		cfg := fmt.Sprintf(`global:
  scrape_interval: 15s
  external_labels:
    e2e_test: %s
remote_write:
  - url: %s
    name: bed-prometheus
    write_relabel_configs:
      - source_labels: [__name__]
        regex: container_memory_working_set_bytes|kubelet_meta_proxy_remote_write_samples_(sent|dropped)_total
        action: keep
    metadata_config:
      send: false
  - url: %s/api/v1/push
    name: local
    headers:
      X-Scope-OrgID: %s
    # One shard with room for about two rounds of the bed's nodes: nothing is dropped while the
    # receiver is up, the queue overflows within seconds while it is down (as in TestMixin).
    queue_config:
      batch_send_deadline: 1s
      max_shards: 1
      capacity: 50000
      min_backoff: 100ms
      max_backoff: 500ms
    metadata_config:
      send_interval: 2s
`, t.Name(), b.RemoteWriteURL, srv.URL, tenant)
		if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("before")
	r, err := b.StartRelay(ctx, "--scrape-interval", "2s", "--config.file", file, "--self-metrics-remote-write")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("relay log:\n%s", r.Logs(40))
		}
		r.Stop()
	}()

	sel := fmt.Sprintf(`{e2e_test=%q}`, t.Name())
	if _, err := b.WaitQuery(ctx, `container_memory_working_set_bytes`+sel, time.Minute, bed.NonEmpty); err != nil {
		t.Fatal(err)
	}
	// The relay's own counter, through remote write, with job="kubelet-meta-proxy".
	self := fmt.Sprintf(`kubelet_meta_proxy_remote_write_samples_sent_total{job="kubelet-meta-proxy",remote_name="bed-prometheus",e2e_test=%q}`, t.Name())
	if _, err := b.WaitQuery(ctx, self, time.Minute, bed.NonEmpty); err != nil {
		t.Fatal(err)
	}
	// write_relabel_configs kept nothing else.
	if res, err := b.Query(ctx, fmt.Sprintf(`count({__name__=~"container_cpu_usage_seconds_total|go_goroutines",e2e_test=%q})`, t.Name())); err != nil || len(res) != 0 {
		t.Errorf("series write_relabel_configs drops reached Prometheus: %v %v", res, err)
	}

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				tenant, md, names := rcv.state()
				t.Fatalf("timed out waiting for %s (tenant %q, %d metadata, %d names)", what, tenant, len(md), len(names))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("metadata and series at the local receiver", func() bool {
		tenant, md, names := rcv.state()
		m, ok := md["container_cpu_usage_seconds_total"]
		return tenant == "before" && ok && m.Type == prompb.MetricMetadata_COUNTER && m.Help != "" &&
			names["container_cpu_usage_seconds_total"] > 0 && names["go_goroutines"] > 0
	})

	sentBefore := selfCounter(ctx, t, r, `kubelet_meta_proxy_remote_write_samples_sent_total{remote_name="bed-prometheus"`)
	write("after-reload")
	resp, err := http.Post(r.BaseURL+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /-/reload: %s", resp.Status)
	}
	waitFor("the new tenant header after /-/reload", func() bool { tenant, _, _ := rcv.state(); return tenant == "after-reload" })
	// The unchanged endpoint kept its queue and its counters.
	if after := selfCounter(ctx, t, r, `kubelet_meta_proxy_remote_write_samples_sent_total{remote_name="bed-prometheus"`); after < sentBefore {
		t.Errorf("bed-prometheus samples_sent_total went from %v to %v over a reload that did not change it", sentBefore, after)
	}

	write("after-hup")
	if err := syscall.Kill(r.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("the new tenant header after SIGHUP", func() bool { tenant, _, _ := rcv.state(); return tenant == "after-hup" })

	// A broken file is refused with its line; the running configuration stays.
	if err := os.WriteFile(file, []byte("remote_write:\n  - name: no-url\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Post(r.BaseURL+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(msg), file+":2: remote_write[0]: url for remote_write is empty") {
		t.Errorf("broken reload: %s %s", resp.Status, msg)
	}
	if v := selfCounter(ctx, t, r, `kubelet_meta_proxy_config_last_reload_successful`); v != 0 {
		t.Errorf("last_reload_successful %v after a failed reload", v)
	}
	_, _, names := rcv.state()
	n := names["container_cpu_usage_seconds_total"]
	waitFor("samples still flowing after the failed reload", func() bool {
		_, _, names := rcv.state()
		return names["container_cpu_usage_seconds_total"] > n
	})

	root, err := bed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(filepath.Join(root, "mixin/alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	expr := alertExpr(t, string(rules), "KubeletMetaProxyRemoteWriteDroppingSamples")
	expr = strings.ReplaceAll(expr, "[5m]", "[15s]")
	dropsOfLocal := func(s []bed.Sample) bool {
		for _, x := range s {
			if x.Metric["remote_name"] == "local" && x.Metric["e2e_test"] == t.Name() && x.Metric["job"] == "kubelet-meta-proxy" {
				return true
			}
		}
		return false
	}
	rcv.down.Store(true)
	start := time.Now()
	if _, err := b.WaitQuery(ctx, expr, time.Minute, dropsOfLocal); err != nil {
		t.Fatalf("the drops alert's expression found no drops of the down endpoint through self-metrics: %v", err)
	}
	t.Logf("drops of the down endpoint visible in the bed's Prometheus %s after it went down", time.Since(start).Round(time.Second))
	rcv.down.Store(false)
	start = time.Now()
	if _, err := b.WaitQuery(ctx, expr, time.Minute, func(s []bed.Sample) bool { return !dropsOfLocal(s) }); err != nil {
		t.Fatalf("drops still reported after the receiver came back: %v", err)
	}
	t.Logf("cleared %s after it came back", time.Since(start).Round(time.Second))
}

// alertExpr returns the one-line expr of an alert in a rules file.
func alertExpr(t *testing.T, rules, alert string) string {
	t.Helper()
	i := strings.Index(rules, "- alert: "+alert+"\n")
	if i < 0 {
		t.Fatalf("no alert %s", alert)
	}
	rest := rules[i:]
	j := strings.Index(rest, "expr: ")
	if j < 0 {
		t.Fatalf("alert %s has no expr", alert)
	}
	line := rest[j+len("expr: "):]
	return strings.TrimSpace(line[:strings.IndexByte(line, '\n')])
}

// selfCounter reads the first sample of /metrics/self whose line starts with prefix.
func selfCounter(ctx context.Context, t *testing.T, r *bed.Relay, prefix string) float64 {
	t.Helper()
	code, body, err := r.Get(ctx, "/metrics/self")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics/self: %d %v", code, err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, prefix) {
			var v float64
			if _, err := fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &v); err == nil {
				return v
			}
		}
	}
	t.Fatalf("no %s in /metrics/self", prefix)
	return 0
}
