package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// hostileRSSBound is the peak resident memory (VmHWM) the relay may reach
// with the bed's nodes, two healthy targets and the hostile ones below under
// the limits hostileArgs sets. Measured on this machine (2 cores, shared):
// 70-73 MiB with every hostile target, 38 MiB with the healthy ones only;
// before the churner's failed scrapes freed their series, 153-257 MiB.
const hostileRSSBound = 128 << 20

// hostileArgs are the limits the test runs the relay with.
var hostileArgs = []string{
	"--sample-limit", "50000", "--label-limit", "64", "--label-name-length-limit", "256",
	"--label-value-length-limit", "4096", "--body-size-limit", "16Mi",
}

const healthySeries = 50

// hostileMux serves, on one host:port, two healthy targets with the same
// series (/a, /b: they must stay apart) and the hostile ones.
func hostileMux() http.Handler {
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	block := bytes.Repeat([]byte("# padding padding padding padding\n"), 1<<14)
	for n := 0; n < 256<<20; n += len(block) { // 256 MiB of comments, about 0.5 MiB gzipped
		_, _ = zw.Write(block)
	}
	_ = zw.Close()
	var churn atomic.Int64
	longValue := strings.Repeat("v", 10<<20)
	mux := http.NewServeMux()
	healthy := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintln(w, "# TYPE healthy_metric gauge")
		for i := range healthySeries {
			fmt.Fprintf(w, "healthy_metric{id=\"%d\"} %d\n", i, i)
		}
	}
	mux.HandleFunc("/a", healthy)
	mux.HandleFunc("/b", healthy)
	mux.HandleFunc("/skewed", func(w http.ResponseWriter, _ *http.Request) {
		now := time.Now()
		fmt.Fprintf(w, "skew_future 1 %d\nskew_past 2 %d\nskew_ok 3\n",
			now.Add(365*24*time.Hour).UnixMilli(), now.Add(-365*24*time.Hour).UnixMilli())
	})
	mux.HandleFunc("/quoted", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, `{"quoted.name","dotted.label"="x"} 1`)
		fmt.Fprintln(w, `plain_beside_quoted 1`)
	})
	mux.HandleFunc("/duplabels", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, `dup_labels{a="1",a="2"} 1`)
	})
	mux.HandleFunc("/bomb", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(bomb.Bytes())
	})
	mux.HandleFunc("/longline", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "long_line{v=%q} 1\n", longValue)
	})
	mux.HandleFunc("/churn", func(w http.ResponseWriter, _ *http.Request) {
		round := churn.Add(1)
		bw := &bytes.Buffer{}
		for i := range 100_000 {
			fmt.Fprintf(bw, "churn_series{round=\"%d\",i=\"%d\"} 1\n", round, i)
		}
		_, _ = w.Write(bw.Bytes())
	})
	return mux
}

func TestHostileTargets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: hostileMux()}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	base := "http://" + ln.Addr().String()
	args := append([]string{}, hostileArgs...)
	paths := []string{"/a", "/b", "/skewed", "/quoted", "/duplabels", "/bomb", "/longline", "/churn"}
	for _, p := range paths {
		args = append(args, "--target", base+p)
	}
	b, r, sel := startRelay(t, args...)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// A few rounds of every target (interval 2s).
	time.Sleep(8 * interval)

	// Healthy targets: up=1, apart on one host:port, every sample in Prometheus.
	for _, p := range []string{"/a", "/b"} {
		q := fmt.Sprintf(`up{%s,job="kubelet-meta-proxy",metrics_path=%q}`, sel, p)
		if _, err := b.WaitQuery(ctx, q, 30*time.Second, func(s []bed.Sample) bool { return len(s) == 1 && s[0].V == 1 }); err != nil {
			t.Errorf("%s: %v", q, err)
		}
		q = fmt.Sprintf(`sum(healthy_metric{%s,metrics_path=%q}) and count(healthy_metric{%s,metrics_path=%q}) == %d`, sel, p, sel, p, healthySeries)
		want := float64(healthySeries * (healthySeries - 1) / 2)
		if _, err := b.WaitQuery(ctx, q, 30*time.Second, func(s []bed.Sample) bool { return len(s) == 1 && s[0].V == want }); err != nil {
			t.Errorf("%s: every sample of %s should reach Prometheus: %v", q, p, err)
		}
	}
	// The nodes keep up=1.
	if _, err := b.WaitQuery(ctx, fmt.Sprintf(`min(up{%s,job="kubelet"}) == 1`, sel), 30*time.Second, bed.NonEmpty); err != nil {
		t.Errorf("node targets not all up: %v", err)
	}
	// The skewed target's in-bounds sample arrives; the others do not.
	if _, err := b.WaitQuery(ctx, fmt.Sprintf(`skew_ok{%s}`, sel), 30*time.Second, bed.NonEmpty); err != nil {
		t.Errorf("skew_ok: %v", err)
	}

	// /metrics parses with Prometheus's parser, legacy and UTF-8.
	for _, accept := range []string{"", "text/plain;version=1.0.0;escaping=allow-utf-8"} {
		body := getWithAccept(t, ctx, r.MetricsURL, accept)
		p := textparse.NewPromParser(body, labels.NewSymbolTable(), false)
		n := 0
		for {
			et, err := p.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("/metrics (Accept %q) does not parse: %v", accept, err)
			}
			if et == textparse.EntrySeries {
				n++
			}
		}
		if n == 0 {
			t.Errorf("/metrics (Accept %q) has no series", accept)
		}
	}

	// /metrics/self: each bad target's reason, no 400 from Prometheus.
	_, self, err := r.Get(ctx, "/metrics/self")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(self))
	if err != nil {
		t.Fatalf("/metrics/self: %v", err)
	}
	value := func(name string, want map[string]string) float64 {
		f := fams[name]
		if f == nil {
			return 0
		}
		sum := 0.0
	next:
		for _, m := range f.Metric {
			have := map[string]string{}
			for _, l := range m.Label {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			if m.Counter != nil {
				sum += m.Counter.GetValue()
			} else if m.Gauge != nil {
				sum += m.Gauge.GetValue()
			}
		}
		return sum
	}
	key := func(p string) string { return "target/" + base + p }
	for p, reason := range map[string]string{"/duplabels": "parse", "/bomb": "body_too_large", "/longline": "label_value_length_limit", "/churn": "sample_limit"} {
		if v := value("kubelet_meta_proxy_target_scrape_errors_total", map[string]string{"target": key(p), "reason": reason}); v < 1 {
			t.Errorf("%s: kubelet_meta_proxy_target_scrape_errors_total{reason=%q} = %v", p, reason, v)
		}
		if v := value("kubelet_meta_proxy_target_up", map[string]string{"target": key(p)}); v != 0 {
			t.Errorf("%s: up %v, want 0", p, v)
		}
	}
	for _, reason := range []string{"too_far_in_future", "too_old"} {
		if v := value("kubelet_meta_proxy_target_samples_out_of_bounds_total", map[string]string{"target": key("/skewed"), "reason": reason}); v < 1 {
			t.Errorf("/skewed: out_of_bounds{reason=%q} = %v", reason, v)
		}
	}
	for _, p := range []string{"/a", "/b", "/skewed", "/quoted"} {
		if v := value("kubelet_meta_proxy_target_up", map[string]string{"target": key(p)}); v != 1 {
			t.Errorf("%s: up %v, want 1", p, v)
		}
	}
	if v := value("kubelet_meta_proxy_remote_write_samples_dropped_total", map[string]string{"reason": "http_400"}); v != 0 {
		t.Errorf("Prometheus answered 400 for %v samples:\n%s", v, r.Logs(30))
	}
	if v := value("kubelet_meta_proxy_remote_write_samples_failed_total", nil); v != 0 {
		t.Errorf("remote write failed for %v samples:\n%s", v, r.Logs(30))
	}

	// Peak RSS.
	hwm := vmHWM(t, r.PID())
	t.Logf("relay peak RSS (VmHWM): %.1f MiB (bound %d MiB)", float64(hwm)/(1<<20), hostileRSSBound>>20)
	if hwm > hostileRSSBound {
		t.Errorf("relay peak RSS %d MiB over the bound %d MiB", hwm>>20, hostileRSSBound>>20)
	}
}

func getWithAccept(t *testing.T, ctx context.Context, url, accept string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return body
}

// vmHWM is the peak resident set size of a process, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}
