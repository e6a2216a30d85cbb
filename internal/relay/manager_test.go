package relay

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/value"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
)

// fakeSink collects what the manager remote-writes.
type fakeSink struct {
	mu      sync.Mutex
	samples []model.Sample
}

func (s *fakeSink) Append(in []model.Sample) {
	s.mu.Lock()
	s.samples = append(s.samples, in...) // Append must copy: Send is reused
	s.mu.Unlock()
}

// count returns how many samples (stale markers if stale) carry label name=value.
func (s *fakeSink) count(name, val string, stale bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, smp := range s.samples {
		if value.IsStaleNaN(smp.V) == stale && hasLabel(smp.Table, smp.Ref, name, val) {
			n++
		}
	}
	return n
}

func (s *fakeSink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.samples)
}

func hasLabel(t *model.LabelTable, ref model.SeriesRef, name, val string) bool {
	it := t.Labels(ref)
	for it.Next() {
		if string(it.Name) == name && string(it.Value) == val {
			return true
		}
	}
	return false
}

type staticNamespaces struct{ ix *enrich.NamespaceIndex }

func (s staticNamespaces) Snapshot() *enrich.NamespaceIndex { return s.ix }

func kubeletServer(t *testing.T, body []byte) *httptest.Server {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept"), "text/plain") {
			http.Error(w, "bad accept", http.StatusNotAcceptable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func srvTarget(srv *httptest.Server, key, path string) *scrape.Target {
	host := strings.TrimPrefix(strings.TrimPrefix(srv.URL, "https://"), "http://")
	return &scrape.Target{Key: key, Node: strings.TrimPrefix(key, "node/"), Address: host, URL: srv.URL + path, Path: path,
		Labels: labelsOf("instance", host, "job", "kubelet", "node", strings.TrimPrefix(key, "node/"))}
}

// newTestManager's scrape timeout is far above what a scrape takes, so that
// a loaded machine does not fail the tests; TestManagerScrapeErrors sets its own.
func newTestManager(t *testing.T, client *http.Client, limit int64, maxConc int, sink Sink) (*Manager, *view.View) {
	return newTestManagerTimeout(t, client, limit, maxConc, sink, 3*time.Second)
}

func newTestManagerTimeout(t *testing.T, client *http.Client, limit int64, maxConc int, sink Sink, timeout time.Duration) (*Manager, *view.View) {
	view := view.NewView()
	f := &scrape.HTTPFetcher{Client: client, Limit: limit, Permission: "get nodes/metrics"}
	m := NewManager(ManagerConfig{
		Interval: 200 * time.Millisecond, Timeout: timeout, MaxConcurrency: maxConc, HonorTimestamps: true,
		NodeFetcher: f, PlainFetcher: f, Namespaces: staticNamespaces{testIndex(1, baseTeams)}, View: view, Sink: sink,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: prometheus.NewRegistry(),
	})
	t.Cleanup(m.Stop)
	return m, view
}

func viewKeys(v *view.View) []string {
	var out []string
	for _, tv := range v.Targets() {
		out = append(out, tv.Target.Key)
	}
	return out
}

func upOf(tv *view.TargetView) float64 {
	return tv.Samples[len(tv.Samples)-numSelfFamilies+famUp].V()
}

func TestManagerScrapesSyncedTargetsAndStalesRemovedOnes(t *testing.T) {
	body := readCapture(t, captures[0])
	s1, s2 := kubeletServer(t, body), kubeletServer(t, body)
	t1, t2 := srvTarget(s1, "node/node-a", "/metrics/cadvisor"), srvTarget(s2, "node/node-b", "/metrics/cadvisor")
	sink := &fakeSink{}
	m, view := newTestManager(t, s1.Client(), 0, 4, sink)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	m.Sync(ctx, []*scrape.Target{t1, t2})
	// A scrape may time out on a loaded machine (150ms): wait for a good one.
	waitFor(t, "both targets up in the view", func() bool {
		tvs := view.Targets()
		return len(tvs) == 2 && upOf(tvs[0]) == 1 && upOf(tvs[1]) == 1 && len(tvs[0].Samples) > 1000 && len(tvs[1].Samples) > 1000
	})
	waitFor(t, "samples of both targets in the sink", func() bool {
		return sink.count("node", "node-a", false) > 1000 && sink.count("node", "node-b", false) > 1000
	})
	if sink.count("team", "platform", false) == 0 {
		t.Fatal("no sample was enriched from its namespace")
	}
	if sink.count("node", "node-b", true) != 0 {
		t.Fatal("stale markers before the target went away")
	}

	m.Sync(ctx, []*scrape.Target{t1})
	if got := viewKeys(view); len(got) != 1 || got[0] != "node/node-a" {
		t.Fatalf("view after removing node-b: %v", got)
	}
	stale := sink.count("node", "node-b", true)
	if stale < 1000 {
		t.Fatalf("%d stale markers for node-b's series", stale)
	}
	if sink.count("node", "node-a", true) != 0 {
		t.Fatal("node-a's series were marked stale")
	}
	// node-a keeps being scraped.
	n := sink.count("node", "node-a", false)
	waitFor(t, "node-a scraped again", func() bool { return sink.count("node", "node-a", false) > n })
}

func TestManagerStopWritesNoStaleMarkers(t *testing.T) {
	body := readCapture(t, captures[0])
	s1 := kubeletServer(t, body)
	sink := &fakeSink{}
	m, view := newTestManager(t, s1.Client(), 0, 4, sink)
	m.Sync(context.Background(), []*scrape.Target{srvTarget(s1, "node/node-a", "/metrics/cadvisor")})
	waitFor(t, "a scrape", func() bool { return sink.count("node", "node-a", false) > 0 })
	m.Stop()
	if n := sink.count("node", "node-a", true); n != 0 {
		t.Fatalf("Stop wrote %d stale markers", n)
	}
	if len(view.Targets()) != 0 {
		t.Fatal("the view still has the stopped target")
	}
	n := sink.len()
	time.Sleep(300 * time.Millisecond)
	if sink.len() != n {
		t.Fatal("samples after Stop")
	}
}

func TestManagerScrapeErrors(t *testing.T) {
	body := readCapture(t, captures[0])
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/forbidden":
			http.Error(w, "Forbidden (user=system:serviceaccount:monitoring:relay, verb=get, resource=nodes, subresource=metrics)", http.StatusForbidden)
		case "/unauthorized":
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
		case "/missing":
			http.Error(w, "no such path", http.StatusNotFound)
		case "/hang":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		default:
			_, _ = w.Write(body)
		}
	}))
	defer srv.Close()
	defer close(release)
	m, _ := newTestManagerTimeout(t, srv.Client(), int64(len(body)-1), 4, nil, time.Second)
	for _, tc := range []struct {
		path, reason string
		check        func(t *testing.T, err error)
	}{
		{"/forbidden", "permission", func(t *testing.T, err error) {
			var pe *scrape.PermissionError
			if !errors.As(err, &pe) || pe.Status != 403 || !strings.Contains(err.Error(), `"get nodes/metrics"`) || !strings.Contains(err.Error(), "forbidden (403)") {
				t.Fatalf("error %v", err)
			}
		}},
		{"/unauthorized", "permission", func(t *testing.T, err error) {
			var pe *scrape.PermissionError
			if !errors.As(err, &pe) || pe.Status != 401 || !strings.Contains(err.Error(), "unauthorized (401)") {
				t.Fatalf("error %v", err)
			}
		}},
		{"/missing", "fetch", func(t *testing.T, err error) {
			if !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "no such path") {
				t.Fatalf("error %v", err)
			}
		}},
		{"/too-large", "body_too_large", func(t *testing.T, err error) {
			var be *scrape.BodyTooLargeError
			if !errors.As(err, &be) || be.Limit != int64(len(body)-1) || !strings.Contains(err.Error(), "body size limit") {
				t.Fatalf("error %v", err)
			}
		}},
		{"/hang", "timeout", func(t *testing.T, err error) {
			var te *TimeoutError
			if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out after") {
				t.Fatalf("error %v", err)
			}
		}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			tg := srvTarget(srv, "node/n", tc.path)
			c := NewTargetCache(tg, true)
			start := time.Now()
			res := m.Scrape(context.Background(), tg, c)
			if el := time.Since(start); el > 3*time.Second {
				t.Fatalf("took %v with a 1s timeout", el)
			}
			if res.Err == nil {
				t.Fatal("no error")
			}
			tc.check(t, res.Err)
			if got := ErrorReason(res.Err); got != tc.reason {
				t.Fatalf("reason %q, want %q", got, tc.reason)
			}
			if up := upOf(res.View); up != 0 || len(res.View.Samples) != numSelfFamilies {
				t.Fatalf("up=%v with %d samples", up, len(res.View.Samples))
			}
		})
	}
}

// countingTransport counts the requests in flight from the relay's side:
// from RoundTrip until the body is closed. (Counting at the server alone
// would also count requests the client already gave up on at its timeout.)
type countingTransport struct {
	next           http.RoundTripper
	inflight, peak atomic.Int32
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	n := c.inflight.Add(1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	resp, err := c.next.RoundTrip(r)
	if err != nil {
		c.inflight.Add(-1)
		return nil, err
	}
	resp.Body = &countedBody{ReadCloser: resp.Body, c: c}
	return resp, nil
}

type countedBody struct {
	io.ReadCloser
	c    *countingTransport
	once sync.Once
}

func (b *countedBody) Close() error {
	b.once.Do(func() { b.c.inflight.Add(-1) })
	return b.ReadCloser.Close()
}

func TestManagerMaxConcurrency(t *testing.T) {
	var inflight, peak, total atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		total.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-time.After(40 * time.Millisecond):
		case <-r.Context().Done():
		}
		inflight.Add(-1)
		_, _ = w.Write([]byte("up_test 1\n"))
	}))
	defer srv.Close()
	ct := &countingTransport{next: srv.Client().Transport}
	m, _ := newTestManager(t, &http.Client{Transport: ct}, 0, 2, nil)
	var ts []*scrape.Target
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		ts = append(ts, srvTarget(srv, "node/"+k, "/"+k))
	}
	m.Sync(context.Background(), ts)
	waitFor(t, "16 scrapes", func() bool { return total.Load() >= 16 })
	m.Stop()
	if p := ct.peak.Load(); p < 1 || p > 2 {
		t.Fatalf("peak concurrency %d at the relay with --max-concurrency=2 and 8 targets", p)
	}
	if p := peak.Load(); p < 1 || p > 3 {
		t.Fatalf("peak concurrency %d at the server", p)
	}
}

func TestManagerResyncSameTargetKeepsLoop(t *testing.T) {
	body := []byte("m{namespace=\"kube-system\"} 1\n")
	s1 := kubeletServer(t, body)
	sink := &fakeSink{}
	m, _ := newTestManager(t, s1.Client(), 0, 1, sink)
	tg := srvTarget(s1, "node/node-a", "/x")
	m.Sync(context.Background(), []*scrape.Target{tg})
	waitFor(t, "a scrape", func() bool { return sink.count("node", "node-a", false) > 0 })
	same := *tg
	m.Sync(context.Background(), []*scrape.Target{&same})
	if n := sink.count("node", "node-a", true); n != 0 {
		t.Fatalf("an unchanged target was restarted (%d stale markers)", n)
	}
	// A changed target (new address) is a new loop: the old series end.
	moved := *tg
	moved.Labels = labelsOf("instance", "elsewhere:1", "job", "kubelet", "node", "node-a")
	m.Sync(context.Background(), []*scrape.Target{&moved})
	if n := sink.count("instance", tg.Address, true); n == 0 {
		t.Fatal("the old identity of a changed target was not marked stale")
	}
}

// ScrapeAll (scrape-once) goes through the loops' path: every target once,
// published to the view and the sink, each failure reported for its target
// and no other.
func TestManagerScrapeAll(t *testing.T) {
	body := readCapture(t, captures[0])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.Error(w, "no such path", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	sink := &fakeSink{}
	m, v := newTestManager(t, srv.Client(), 0, 1, sink)
	good, bad := srvTarget(srv, "node/node-a", "/metrics/cadvisor"), srvTarget(srv, "node/node-b", "/missing")
	errs := m.ScrapeAll(context.Background(), []*scrape.Target{bad, good})
	if len(errs) != 2 || errs[0] == nil || errs[1] != nil {
		t.Fatalf("errors %v, want one for %s only", errs, bad.Key)
	}
	if got := viewKeys(v); !slices.Equal(got, []string{"node/node-a", "node/node-b"}) {
		t.Fatalf("view holds %v", got)
	}
	for _, tv := range v.Targets() {
		if want := map[string]float64{"node/node-a": 1, "node/node-b": 0}[tv.Target.Key]; upOf(tv) != want {
			t.Errorf("%s: up %v, want %v", tv.Target.Key, upOf(tv), want)
		}
	}
	// The failed target sends only its own series (up 0 and the like).
	if sink.count("node", "node-a", false) <= numSelfFamilies || sink.count("node", "node-b", false) != numSelfFamilies {
		t.Errorf("sink: %d samples of node-a, %d of node-b", sink.count("node", "node-a", false), sink.count("node", "node-b", false))
	}
}

// Between scrapes a target keeps only its last scrape's order (prev): the
// buffer the next one records its order in comes from the manager, shared
// by the targets, and the scrapes that take one another target used see
// their series as they are.
func TestManagerPoolsScrapeOrder(t *testing.T) {
	srv := kubeletServer(t, readCapture(t, captures[0]))
	small := kubeletServer(t, readCapture(t, captures[3]))
	m, _ := newTestManager(t, srv.Client(), 0, 1, &fakeSink{})
	targets := []*scrape.Target{srvTarget(srv, "node/node-a", "/metrics/cadvisor"), srvTarget(small, "node/node-b", "/metrics/cadvisor")}
	var caches []*TargetCache
	for _, tg := range targets {
		caches = append(caches, NewTargetCache(tg, true))
	}
	shown := make([]int, len(targets))
	for round := range 4 {
		for i, tg := range targets {
			c := caches[i]
			res := m.Scrape(context.Background(), tg, c)
			if res.Err != nil {
				t.Fatalf("round %d, %s: %v", round, tg.Key, res.Err)
			}
			if round == 0 {
				shown[i] = len(res.View.Samples)
			}
			if len(res.View.Samples) != shown[i] || len(c.prev) != shown[i]-numSelfFamilies || res.Stale != 0 || (round > 0 && res.SeriesAdded != 0) {
				t.Fatalf("round %d, %s: %d samples shown (want %d), order of %d, %d stale, %d added", round, tg.Key,
					len(res.View.Samples), shown[i], len(c.prev), res.Stale, res.SeriesAdded)
			}
			m.Publish(tg, c, res)
			if c.cur != nil || len(c.prev) != shown[i]-numSelfFamilies {
				t.Fatalf("round %d, %s: kept an order buffer of %d after publishing, prev %d", round, tg.Key, cap(c.cur), len(c.prev))
			}
		}
	}
	if n := len(m.orders); n != 1 {
		t.Fatalf("%d order buffers kept, want 1 (one scrape at a time)", n)
	}
}
