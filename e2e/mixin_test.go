package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// TestMixin runs the mixin (mixin/alerts.yaml, mixin/dashboards) against a real relay of the bed: a
// Prometheus of the test's own scrapes the relay's /metrics/self every second as job="kubelet-meta-proxy" (as
// the ServiceMonitor's second endpoint does) and evaluates the alert rules. The relay writes to a receiver the
// test turns down and up: while it is down the queue (50,000 samples) overflows, and the drops alert fires; once
// it is up again the alert resolves. Then every query of the dashboard (panels and variables) must return data.
// The drops alert is evaluated time-compressed ([5m] -> [15s], for: 1m -> for: 5s), the rest as written.
func TestMixin(t *testing.T) {
	b := needBed(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	root, err := bed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not found (apt-get install prometheus): %v", err)
	}

	var down atomic.Bool
	down.Store(true)
	var accepted atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if down.Load() {
			http.Error(w, "receiver down for the test", http.StatusServiceUnavailable)
			return
		}
		accepted.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()
	// A --target nobody listens on: scrape errors for the error panels.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadTarget := "http://" + ln.Addr().String() + "/metrics"
	ln.Close()

	r, err := b.StartRelay(ctx, "--scrape-interval", "2s",
		"--remote-write-url", receiver.URL+"/api/v1/write",
		// Room for about two rounds of the bed's three nodes (~7k samples each every 2s): nothing is dropped
		// while the receiver is up, the queue overflows within seconds while it is down. One shard: the
		// capacity is split between the shards, and with 4 a shard that gets two nodes overflows every round
		// even with the receiver up (seen here: 12,500 per shard against 2 x 6,900).
		"--remote-write-queue-capacity", "50000", "--remote-write-shards", "1",
		"--min-backoff", "100ms", "--max-backoff", "500ms",
		"--target", deadTarget,
		"--external-label", "e2e_test="+t.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()

	// The rules as shipped, the drops alert's window and for shortened.
	rules, err := os.ReadFile(filepath.Join(root, "mixin/alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const dropAlert = "KubeletMetaProxyRemoteWriteDroppingSamples"
	rulesText := compressAlert(t, string(rules), dropAlert)
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "alerts.yaml")
	if err := os.WriteFile(rulesFile, []byte(rulesText), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := freeLocalPort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: kubelet-meta-proxy
    metrics_path: /metrics/self
    static_configs:
      - targets: [%q]
`, rulesFile, strings.TrimPrefix(r.BaseURL, "http://"))
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	promURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	prom := exec.Command(promBin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port))
	prom.Stdout, prom.Stderr = logFile, logFile
	prom.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = prom.Process.Signal(syscall.SIGTERM)
		_ = prom.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("prometheus log:\n%s", lastLines(string(b), 30))
			t.Logf("relay log:\n%s", r.Logs(30))
		}
	}()

	alertState := func() (string, error) {
		var res struct {
			Data struct {
				Alerts []struct {
					Labels map[string]string `json:"labels"`
					State  string            `json:"state"`
				} `json:"alerts"`
			} `json:"data"`
		}
		if err := promGet(ctx, promURL+"/api/v1/alerts", &res); err != nil {
			return "", err
		}
		state := "inactive"
		for _, a := range res.Data.Alerts {
			if a.Labels["alertname"] == dropAlert {
				state = a.State
			}
		}
		return state, nil
	}
	waitState := func(want string, timeout time.Duration) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		last := ""
		for {
			s, err := alertState()
			if err == nil && s == want {
				return
			}
			last = fmt.Sprintf("state %q, err %v", s, err)
			if time.Now().After(deadline) || ctx.Err() != nil {
				_, self, _ := r.Get(ctx, "/metrics/self")
				var rw []string
				for _, l := range strings.Split(string(self), "\n") {
					if strings.HasPrefix(l, "kubelet_meta_proxy_remote_write_") && !strings.Contains(l, "_bucket") {
						rw = append(rw, l)
					}
				}
				t.Fatalf("%s not %s after %s: %s; receiver accepted %d requests; the relay's remote-write metrics:\n%s",
					dropAlert, want, timeout, last, accepted.Load(), strings.Join(rw, "\n"))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	start := time.Now()
	waitState("firing", 90*time.Second)
	t.Logf("%s firing %s after the relay started with the receiver down", dropAlert, time.Since(start).Round(time.Second))
	down.Store(false)
	upAt := time.Now()
	waitState("inactive", 90*time.Second)
	t.Logf("%s resolved %s after the receiver came back (%d requests accepted)", dropAlert, time.Since(upAt).Round(time.Second), accepted.Load())

	// Every dashboard query returns data.
	files, _ := filepath.Glob(filepath.Join(root, "mixin/dashboards/*.json"))
	if len(files) == 0 {
		t.Fatal("no mixin/dashboards/*.json")
	}
	vars := strings.NewReplacer(`"$job"`, `"kubelet-meta-proxy"`, `"$instance"`, `".+"`, "$__rate_interval", "15s")
	n := 0
	for _, f := range files {
		for _, q := range dashboardExprs(t, f) {
			expr := vars.Replace(q.expr)
			n++
			deadline := time.Now().Add(30 * time.Second)
			for {
				got, err := promVectorLen(ctx, promURL, expr)
				if err == nil && got > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("%s: %s returns no data (%d series, %v)", q.where, expr, got, err)
					break
				}
				time.Sleep(time.Second)
			}
		}
	}
	t.Logf("%d dashboard queries return data", n)
}

// compressAlert shortens one alert's range windows and for duration so that the test sees it fire and
// resolve in seconds; it fails if the alert's block is not found as expected.
func compressAlert(t *testing.T, rules, alert string) string {
	t.Helper()
	i := strings.Index(rules, "- alert: "+alert+"\n")
	if i < 0 {
		t.Fatalf("alerts.yaml has no alert %s", alert)
	}
	end := len(rules)
	if j := strings.Index(rules[i+1:], "- alert: "); j >= 0 {
		end = i + 1 + j
	}
	block := rules[i:end]
	if !strings.Contains(block, "[5m]") || !strings.Contains(block, "for: 1m\n") {
		t.Fatalf("alert %s: want a [5m] window and for: 1m to shorten, have:\n%s", alert, block)
	}
	block = strings.ReplaceAll(block, "[5m]", "[15s]")
	block = strings.Replace(block, "for: 1m\n", "for: 5s\n", 1)
	return rules[:i] + block + rules[end:]
}

type dashQuery struct{ where, expr string }

// dashboardExprs returns the PromQL of every panel target and the selector of every label_values variable.
func dashboardExprs(t *testing.T, file string) []dashQuery {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
	}
	// The datasource variable's query is a plain string: decode the list leniently.
	var raw struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []json.RawMessage `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var out []dashQuery
	for _, p := range raw.Panels {
		for _, tg := range p.Targets {
			out = append(out, dashQuery{fmt.Sprintf("%s panel %d %q %s", filepath.Base(file), p.ID, p.Title, tg.RefID), tg.Expr})
		}
	}
	for _, v := range raw.Templating.List {
		var q struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		}
		if err := json.Unmarshal(v, &q); err != nil || q.Type != "query" {
			continue
		}
		var lq struct{ Query string }
		if err := json.Unmarshal(q.Query, &lq); err != nil {
			t.Fatalf("%s: variable %s: %v", file, q.Name, err)
		}
		sel, ok := strings.CutPrefix(lq.Query, "label_values(")
		k := strings.LastIndex(sel, ",")
		if !ok || k < 0 {
			t.Fatalf("%s: variable %s: %q is not label_values(SELECTOR, LABEL)", file, q.Name, lq.Query)
		}
		out = append(out, dashQuery{fmt.Sprintf("%s variable %s", filepath.Base(file), q.Name), sel[:k]})
	}
	if len(out) < 20 {
		t.Fatalf("%s: only %d queries found", file, len(out))
	}
	return out
}

func promGet(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", u, resp.Status, body)
	}
	return json.Unmarshal(body, v)
}

// promVectorLen runs an instant query and returns how many series it gave.
func promVectorLen(ctx context.Context, base, q string) (int, error) {
	var res struct {
		Data struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := promGet(ctx, base+"/api/v1/query?query="+url.QueryEscape(q), &res); err != nil {
		return 0, err
	}
	if res.Data.ResultType != "vector" {
		return 0, fmt.Errorf("result type %s", res.Data.ResultType)
	}
	return len(res.Data.Result), nil
}

func freeLocalPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
