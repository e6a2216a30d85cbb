package remotewrite

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/prompb"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// staticMetadata is a MetadataSource with a fixed list.
type staticMetadata []Metadata

func (s staticMetadata) AppendMetadata(dst []Metadata) []Metadata { return append(dst, s...) }

// testFamilies are the families the fake source knows: more than any tenant uses.
var testFamilies = staticMetadata{
	{Family: "container_cpu_usage_seconds_total", Type: "counter", Help: "Cumulative cpu time consumed in seconds."},
	{Family: "container_memory_working_set_bytes", Type: "gauge", Help: "Current working set in bytes."},
	{Family: "machine_cpu_cores", Type: "gauge", Help: "Number of logical CPU cores."},
	{Family: "node_load1", Type: "gauge", Help: "1m load average."},
	{Family: "request_duration_seconds", Type: "histogram", Help: "Request latency."},
	{Family: "rpc_seconds", Type: "summary", Help: "RPC latency."},
	{Family: "unused_family", Type: "gauge", Help: "Nobody has series of it."},
}

// feedMetadataGroup appends a sample of each of series() to g every 20ms,
// as scrapes would, until ctx ends; the function it returns cancels and
// waits for the feed to stop.
func feedMetadataGroup(ctx context.Context, cancel context.CancelFunc, g *Group, series func() []testSeries) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ts := int64(1); ctx.Err() == nil; ts++ {
			var batch []model.Sample
			for _, s := range series() {
				batch = append(batch, s.at(ts, float64(ts)))
			}
			g.Append(batch)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() { cancel(); <-done }
}

// runMetadataGroup runs a Group of endpoint e with testFamilies as its
// metadata source until the test ends (or cancel), and checks Run's error:
// none, or with dropped, the samples a refusing receiver never took.
func runMetadataGroup(t *testing.T, e EndpointConfig, shutdown time.Duration, dropped bool) (*Group, context.Context, context.CancelFunc) {
	t.Helper()
	g, err := NewGroup(Config{Endpoints: []EndpointConfig{e}, ShutdownTimeout: shutdown}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	g.SetMetadataSource(testFamilies)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		err := <-done
		switch {
		case dropped && (err == nil || !strings.Contains(err.Error(), "dropped at shutdown")):
			t.Errorf("Run: %v, want samples dropped at shutdown", err)
		case !dropped && err != nil:
			t.Error(err)
		}
	})
	return g, ctx, cancel
}

// Each tenant's metadata requests carry that tenant's header and exactly the
// families its series used (a histogram's _bucket/_sum/_count are one
// family), at most max_samples_per_send entries each; a tenant whose series
// stop gets no metadata after the interval they stopped in.
func TestTenantMetadata(t *testing.T) {
	rcv := newTenantReceiver(t, "X-Scope-Orgid", nil)
	e := tenantEndpoint(rcv.url(), TenantConfig{Label: "team", Default: "platform"})
	const interval = 150 * time.Millisecond
	e.Prom = &PromSettings{Metadata: MetadataConfig{Send: true, SendInterval: interval, MaxSamplesPerSend: 2}}
	g, ctx, cancel := runMetadataGroup(t, e, 5*time.Second, false)

	tg := newTarget(1)
	a := []testSeries{
		teamSeries(tg, "container_cpu_usage_seconds_total", "p1", "a"),
		teamSeries(tg, "request_duration_seconds_bucket", "p1", "a", "le", "1"),
		teamSeries(tg, "request_duration_seconds_bucket", "p1", "a", "le", "+Inf"),
		teamSeries(tg, "request_duration_seconds_count", "p1", "a"),
		teamSeries(tg, "request_duration_seconds_sum", "p1", "a"),
		teamSeries(tg, "series_without_family", "p1", "a"),
	}
	b := []testSeries{
		teamSeries(tg, "container_memory_working_set_bytes", "p2", "b"),
		teamSeries(tg, "container_cpu_usage_seconds_total", "p2", "b"), // a family two tenants use
		teamSeries(tg, "rpc_seconds_count", "p2", "b"),
		// A label name sorting before __name__: the name is in the run, not the first label.
		tg.series(pairs("Zone", "z1", "__name__", "node_load1", "team", "b")...),
	}
	platform := []testSeries{teamSeries(tg, "machine_cpu_cores", "node", "")}
	want := map[string][]string{
		"a":        {"container_cpu_usage_seconds_total", "request_duration_seconds"},
		"b":        {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "node_load1", "rpc_seconds"},
		"platform": {"machine_cpu_cores"},
	}

	var mu sync.Mutex
	sendA := true
	defer feedMetadataGroup(ctx, cancel, g, func() []testSeries {
		mu.Lock()
		defer mu.Unlock()
		series := append(slices.Clone(b), platform...)
		if sendA {
			series = append(series, a...)
		}
		return series
	})()

	families := func(since time.Time) (map[string]map[string]prompb.MetricMetadata, map[string]int) {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		got, reqs := map[string]map[string]prompb.MetricMetadata{}, map[string]int{}
		for _, r := range rcv.metadata {
			if r.at.Before(since) {
				continue
			}
			reqs[r.tenant]++
			if len(r.md) > 2 {
				t.Errorf("tenant %s: a metadata request of %d entries, max_samples_per_send is 2", r.tenant, len(r.md))
			}
			if got[r.tenant] == nil {
				got[r.tenant] = map[string]prompb.MetricMetadata{}
			}
			for _, m := range r.md {
				got[r.tenant][m.MetricFamilyName] = m
			}
		}
		return got, reqs
	}
	// Three intervals: every tenant has had a full one.
	eventually(t, 10*time.Second, "metadata for every tenant, three times", func() bool {
		_, reqs := families(time.Time{})
		return reqs["a"] >= 3 && reqs["b"] >= 3*2 && reqs["platform"] >= 3
	})
	got, _ := families(time.Time{})
	if len(got) != len(want) {
		t.Errorf("metadata went to tenants %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	for tenant, fams := range want {
		if names := slices.Sorted(maps.Keys(got[tenant])); !slices.Equal(names, fams) {
			t.Errorf("tenant %s got metadata of %v, want exactly %v", tenant, names, fams)
		}
	}
	if m := got["a"]["request_duration_seconds"]; m.Type != prompb.MetricMetadata_HISTOGRAM || m.Help != "Request latency." {
		t.Errorf("tenant a: histogram metadata %+v", m)
	}
	if m := got["b"]["container_cpu_usage_seconds_total"]; m.Type != prompb.MetricMetadata_COUNTER || m.Help != testFamilies[0].Help {
		t.Errorf("tenant b: counter metadata %+v", m)
	}
	// Only what was queued since the previous send: a's series stop, and
	// from the second interval after that a gets no metadata; b still does.
	mu.Lock()
	sendA = false
	mu.Unlock()
	stopped := time.Now()
	time.Sleep(interval + interval/2)
	mark := time.Now()
	eventually(t, 10*time.Second, "two more intervals of b's metadata", func() bool {
		_, reqs := families(mark)
		return reqs["b"] >= 2*2
	})
	if after, reqs := families(mark); reqs["a"] != 0 {
		t.Errorf("tenant a got %d metadata requests (%v) from %s after its series stopped", reqs["a"], after["a"], mark.Sub(stopped))
	}
	sent := 0.0
	for _, mf := range mustGather(t, g) {
		if mf.GetName() == metricPrefix+"metadata_sent_total" {
			sent = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if sent == 0 {
		t.Error("metadata_sent_total is 0")
	}
}

func mustGather(t *testing.T, g *Group) []*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// The names tracked between two sends are bounded; a take starts afresh,
// and a tenant without series in an interval keeps no set.
func TestTenantMetadataNamesBounded(t *testing.T) {
	e := tenantEndpoint("http://127.0.0.1:1/push", TenantConfig{Label: "team", Default: "platform"})
	if err := (&Config{Endpoints: []EndpointConfig{e}}).Validate(); err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{Endpoints: []EndpointConfig{e}}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	q := w.tenantQueues[0]
	q.cfg.Capacity = 1 << 20
	q.trackNames()
	tg := newTarget(1)
	const extra = 10
	batch := make([]model.Sample, 0, maxTrackedNames+extra)
	for i := range maxTrackedNames + extra {
		team := "a"
		if i%2 == 1 {
			team = "b"
		}
		batch = append(batch, teamSeries(tg, fmt.Sprintf("m%d", i), "p", team).at(1, 1))
	}
	q.append(batch)
	tenants, over := q.takeNames()
	if over != extra {
		t.Errorf("%d names over the bound, want %d", over, extra)
	}
	total := 0
	for _, tn := range tenants {
		total += len(tn.names)
	}
	if total != maxTrackedNames {
		t.Errorf("%d names taken, want %d", total, maxTrackedNames)
	}
	if n := len(q.names.names); n != 0 {
		t.Errorf("%d names kept after the take", n)
	}
	// The next interval: only b, one name.
	q.append([]model.Sample{teamSeries(tg, "m1", "p", "b").at(2, 1)})
	tenants, over = q.takeNames()
	if len(tenants) != 1 || tenants[0].tenant != "b" || !slices.Equal(tenants[0].names, []string{"m1"}) || over != 0 {
		t.Errorf("second interval: %+v (over %d), want b: [m1]", tenants, over)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, ts := range q.tenants {
		if ts != nil && ts.name == "a" && ts.names != nil {
			t.Errorf("tenant a keeps a name set of %d words after an interval without series", len(ts.names))
		}
	}
}

// A tenant whose writes are refused (429) and that waits for its retry gets
// no metadata requests meanwhile (counted as deferred); the others keep
// getting theirs.
func TestTenantMetadataBackoff(t *testing.T) {
	rcv := newTenantReceiver(t, "X-Scope-Orgid", func(tenant string, _ int) int {
		if tenant == "a" {
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	e := tenantEndpoint(rcv.url(), TenantConfig{Label: "team", Default: "platform"})
	e.Queue.MinBackoff, e.Queue.MaxBackoff = 20*time.Second, 40*time.Second
	const interval = 100 * time.Millisecond
	e.Prom = &PromSettings{Metadata: MetadataConfig{Send: true, SendInterval: interval}}
	g, ctx, cancel := runMetadataGroup(t, e, time.Second, true)
	tg := newTarget(1)
	series := []testSeries{
		teamSeries(tg, "container_cpu_usage_seconds_total", "p1", "a"),
		teamSeries(tg, "container_memory_working_set_bytes", "p2", "b"),
	}
	defer feedMetadataGroup(ctx, cancel, g, func() []testSeries { return series })()

	count := func(since time.Time) map[string]int {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		reqs := map[string]int{}
		for _, r := range rcv.metadata {
			if !r.at.Before(since) {
				reqs[r.tenant]++
			}
		}
		return reqs
	}
	eventually(t, 10*time.Second, "a write of tenant a refused", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return rcv.requests["a"] > 0
	})
	// From the interval after the refusal on, a is backing off.
	mark := time.Now().Add(interval)
	eventually(t, 10*time.Second, "three metadata requests of tenant b", func() bool {
		return count(mark)["b"] >= 3
	})
	if n := count(mark)["a"]; n != 0 {
		t.Errorf("tenant a, backing off, got %d metadata requests", n)
	}
	var deferred float64
	for _, mf := range mustGather(t, g) {
		if mf.GetName() == metricPrefix+"metadata_deferred_total" {
			deferred = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if deferred == 0 {
		t.Error("metadata_deferred_total is 0")
	}
}
