package server

import (
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relay"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testView holds two node targets, scraped once each.
func testView(t *testing.T) *view.View {
	v := view.NewView()
	ix := enrich.NewNamespaceIndex(1, map[string]enrich.NamespaceInfo{"web": {Labels: []enrich.Label{{Name: "team", Value: "frontend"}}, Version: 1}})
	body := "# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed.\n# TYPE container_cpu_usage_seconds_total counter\n" +
		"container_cpu_usage_seconds_total{container=\"app\",namespace=\"web\",pod=\"web-0\"} 12.5 1700000000000\n"
	o := scrape.NodeTargetOptions{Path: "/metrics/cadvisor", Job: "kubelet", MetricsPathLabel: "metrics_path", NodeLabel: "node"}
	for i, n := range []string{"node-a", "node-b"} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}
		node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0." + string(rune('1'+i))}}
		res := relay.NewTargetCache(o.NodeTarget(node), true).Process([]byte(body), "text/plain", time.Now(), time.Second, ix, nil)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		v.Set(res.View)
	}
	return v
}

type readyFlag struct {
	mu  sync.Mutex
	err error
}

func (r *readyFlag) set(err error) { r.mu.Lock(); r.err = err; r.mu.Unlock() }
func (r *readyFlag) get() error    { r.mu.Lock(); defer r.mu.Unlock(); return r.err }

// start runs the server on a free port and returns its base URL.
func start(t *testing.T, cfg Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = discard()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(cfg).Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	// A transport that does not ask for (and transparently undo) gzip itself.
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		r = zr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func parseExposition(t *testing.T, text string) map[string]int {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("expfmt rejects /metrics: %v\n%s", err, text)
	}
	out := map[string]int{}
	for name, f := range fams {
		out[name] = len(f.Metric)
	}
	return out
}

func TestServer(t *testing.T) {
	ready := &readyFlag{err: errors.New("waiting for caches")}
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "kubelet_meta_proxy_test_total", Help: "x"})
	reg.MustRegister(c)
	base := start(t, Config{View: testView(t), Gatherer: reg, Ready: ready.get})

	t.Run("metrics", func(t *testing.T) {
		resp, body := get(t, base+PathMetrics)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
			t.Fatalf("%d %v", resp.StatusCode, resp.Header)
		}
		fams := parseExposition(t, body)
		if fams["container_cpu_usage_seconds_total"] != 2 || fams["up"] != 2 {
			t.Fatalf("families %v", fams)
		}
		if strings.Count(body, "# TYPE container_cpu_usage_seconds_total counter") != 1 {
			t.Fatalf("family metadata not written once:\n%s", body)
		}
		if !strings.Contains(body, `team="frontend"`) || !strings.Contains(body, `node="node-b"`) {
			t.Fatalf("enriched labels missing:\n%s", body)
		}
	})
	t.Run("node filter", func(t *testing.T) {
		for _, tc := range []struct {
			query string
			n     int
		}{{"?node=node-a", 1}, {"?node=node-a,node-b", 2}, {"?node=node-a&node=node-b", 2}, {"?node=other", 0}} {
			_, body := get(t, base+PathMetrics+tc.query)
			fams := parseExposition(t, body)
			if fams["up"] != tc.n {
				t.Errorf("%s: %d targets, want %d", tc.query, fams["up"], tc.n)
			}
			if tc.n == 1 && strings.Contains(body, "node-b") {
				t.Errorf("%s: node-b in the output", tc.query)
			}
		}
	})
	t.Run("gzip", func(t *testing.T) {
		for _, tc := range []struct {
			accept string
			gzip   bool
		}{{"gzip", true}, {"deflate, gzip;q=0.5", true}, {"gzip;q=0", false}, {"identity", false}, {"", false}} {
			resp, body := get(t, base+PathMetrics, "Accept-Encoding", tc.accept)
			if got := resp.Header.Get("Content-Encoding") == "gzip"; got != tc.gzip {
				t.Errorf("Accept-Encoding %q: gzip=%v", tc.accept, got)
			}
			if fams := parseExposition(t, body); fams["up"] != 2 {
				t.Errorf("Accept-Encoding %q: %v", tc.accept, fams)
			}
		}
	})
	t.Run("health", func(t *testing.T) {
		if resp, _ := get(t, base+PathHealthz); resp.StatusCode != 200 {
			t.Fatalf("healthz %d", resp.StatusCode)
		}
		resp, body := get(t, base+PathReadyz)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for caches") {
			t.Fatalf("readyz before ready: %d %q", resp.StatusCode, body)
		}
		ready.set(nil)
		if resp, _ := get(t, base+PathReadyz); resp.StatusCode != 200 {
			t.Fatalf("readyz when ready: %d", resp.StatusCode)
		}
		ready.set(errors.New("shutting down"))
		if resp, _ := get(t, base+PathReadyz); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("readyz when shutting down: %d", resp.StatusCode)
		}
	})
	t.Run("self metrics", func(t *testing.T) {
		c.Add(3)
		resp, body := get(t, base+PathSelfMetrics)
		if resp.StatusCode != 200 || !strings.Contains(body, "kubelet_meta_proxy_test_total 3") {
			t.Fatalf("%d:\n%s", resp.StatusCode, body)
		}
		parseExposition(t, body)
	})
}

func TestAcceptsGzip(t *testing.T) {
	for h, want := range map[string]bool{
		"gzip": true, "gzip, deflate, br": true, "br;q=1.0, gzip;q=0.8": true, " gzip ; q=0.5": true,
		"gzip;q=0": false, "gzip; q=0": false, "": false, "deflate": false, "x-gzip": false,
	} {
		if got := acceptsGzip(h); got != want {
			t.Errorf("acceptsGzip(%q) = %v", h, got)
		}
	}
}
