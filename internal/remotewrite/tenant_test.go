package remotewrite

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// tenantReceiver is a multi-tenant receiver: it checks that every request
// names exactly one tenant, records what each tenant was sent, and answers
// per tenant.
type tenantReceiver struct {
	t      testing.TB
	srv    *httptest.Server
	header string

	mu       sync.Mutex
	requests map[string]int                        // by tenant
	series   map[string]map[string][]prompb.Sample // tenant -> series -> accepted samples
	firsts   []map[string]string                   // labels of each request's first series
	reqs     [][]map[string]string                 // labels of every series, by request
	respond  func(tenant string, n int) int        // status; n counts the tenant's requests from 1
	metadata []tenantMetadataRequest               // every request that carried metadata, in order
}

// tenantMetadataRequest is one request's metadata, with its tenant.
type tenantMetadataRequest struct {
	tenant string
	at     time.Time
	md     []prompb.MetricMetadata
}

func newTenantReceiver(t testing.TB, header string, respond func(tenant string, n int) int) *tenantReceiver {
	r := &tenantReceiver{t: t, header: header, requests: map[string]int{}, series: map[string]map[string][]prompb.Sample{}, respond: respond}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *tenantReceiver) url() string { return r.srv.URL + "/api/v1/push" }

func (r *tenantReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	tenants := req.Header.Values(r.header)
	if len(tenants) != 1 || tenants[0] == "" {
		r.t.Errorf("request with tenant header %s = %q, want exactly one tenant", r.header, tenants)
		http.Error(w, "no tenant", http.StatusUnauthorized)
		return
	}
	tenant := tenants[0]
	wr, err := decodeRequest(body)
	if err != nil {
		r.t.Errorf("undecodable request: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var all []map[string]string
	for _, ts := range wr.Timeseries {
		if err := checkLabels(ts.Labels); err != nil {
			r.t.Errorf("series %s: %v", labelsKey(ts.Labels), err)
		}
		m := map[string]string{}
		for _, l := range ts.Labels {
			m[l.Name] = l.Value
		}
		all = append(all, m)
	}
	r.mu.Lock()
	r.requests[tenant]++
	status := http.StatusOK
	if r.respond != nil {
		status = r.respond(tenant, r.requests[tenant])
	}
	if len(wr.Metadata) > 0 {
		r.metadata = append(r.metadata, tenantMetadataRequest{tenant: tenant, at: time.Now(), md: wr.Metadata})
	}
	r.reqs = append(r.reqs, all)
	if len(all) > 0 {
		r.firsts = append(r.firsts, all[0])
	}
	if status/100 == 2 {
		if r.series[tenant] == nil {
			r.series[tenant] = map[string][]prompb.Sample{}
		}
		for _, ts := range wr.Timeseries {
			k := labelsKey(ts.Labels)
			r.series[tenant][k] = append(r.series[tenant][k], ts.Samples...)
		}
	}
	r.mu.Unlock()
	w.WriteHeader(status)
}

// got returns a copy of what tenant was sent: series key -> samples.
func (r *tenantReceiver) got(tenant string) map[string][]prompb.Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]prompb.Sample{}
	for k, v := range r.series[tenant] {
		out[k] = slices.Clone(v)
	}
	return out
}

func (r *tenantReceiver) count(tenant string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.series[tenant] {
		n += len(v)
	}
	return n
}

func (r *tenantReceiver) tenants() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for k := range r.series {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func tenantEndpoint(url string, tc TenantConfig) EndpointConfig {
	e := testEndpoint(url)
	e.Tenant = tc
	return e
}

// teamSeries builds, in one producer, series of the given teams ("" for no
// team label) with target-like labels, the way the relay interns them.
func teamSeries(tg *target, metric, pod, team string, extra ...string) testSeries {
	nv := []string{"__name__", metric, "cluster", "c1", "namespace", "ns-" + pod, "pod", pod}
	if team != "" {
		nv = append(nv, "team", team)
	}
	nv = append(nv, extra...)
	ls := pairs(nv...)
	slices.SortFunc(ls, func(a, b model.Label) int { return strings.Compare(a.Name, b.Name) })
	return tg.series(ls...)
}

func TestTenantRouting(t *testing.T) {
	rcv := newTenantReceiver(t, "X-Scope-Orgid", nil)
	h := start(t, Config{Endpoints: []EndpointConfig{tenantEndpoint(rcv.url(), TenantConfig{Label: "team", Default: "platform"})}}, nil)

	tg := newTarget(1)
	teams := []string{"frontend", "backend", "data", "", "not/valid"}
	var series []testSeries
	var wantTenant []string
	for i := range 40 {
		team := teams[i%len(teams)]
		for _, metric := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes"} {
			series = append(series, teamSeries(tg, metric, fmt.Sprintf("pod-%d", i), team))
			tn := team
			if team == "" || team == "not/valid" {
				tn = "platform"
			}
			wantTenant = append(wantTenant, tn)
		}
	}
	const rounds = 5
	for r := range rounds {
		var batch []model.Sample
		for _, s := range series {
			batch = append(batch, s.at(int64(1000+r), float64(r)))
		}
		h.w.Append(batch)
	}
	eventually(t, 5*time.Second, "every sample delivered", func() bool {
		n := 0
		for _, tn := range []string{"frontend", "backend", "data", "platform"} {
			n += rcv.count(tn)
		}
		return n == len(series)*rounds
	})
	if got, want := rcv.tenants(), []string{"backend", "data", "frontend", "platform"}; !slices.Equal(got, want) {
		t.Fatalf("tenants %v, want %v", got, want)
	}
	for i, s := range series {
		got := rcv.got(wantTenant[i])[seriesKey(s)]
		if want := rangeTS(1000, 1000+rounds-1); !slices.Equal(timestamps(got), want) {
			t.Errorf("series %s in tenant %s: timestamps %v, want %v", seriesKey(s), wantTenant[i], timestamps(got), want)
		}
	}
	// Each request carries one tenant's series only.
	rcv.mu.Lock()
	for tn, ss := range rcv.series {
		for k := range ss {
			team := ""
			if _, v, ok := strings.Cut(k, "team="); ok {
				team, _, _ = strings.Cut(v, ",")
			}
			if tn != "platform" && team != tn || tn == "platform" && team != "" && team != "not/valid" {
				t.Errorf("tenant %s got series %s", tn, k)
			}
		}
	}
	rcv.mu.Unlock()
	// The counters move when a worker notes the answer, just after the receiver counted.
	eventually(t, 5*time.Second, "sends settled", func() bool { return h.w.tenantQueues[0].length() == 0 })
	if got := h.metric("tenant_samples_sent_total", map[string]string{"tenant": "frontend"}); got != float64(16*rounds) {
		t.Errorf("tenant_samples_sent_total{tenant=frontend} = %v, want %d", got, 16*rounds)
	}
	if got := h.metric("tenants", nil); got != 4 {
		t.Errorf("tenants gauge = %v, want 4", got)
	}
	if got := h.metric("samples_sent_total", nil); got != float64(len(series)*rounds) {
		t.Errorf("samples_sent_total = %v, want %d", got, len(series)*rounds)
	}
}

func TestTenantMissingDrop(t *testing.T) {
	rcv := newTenantReceiver(t, "Thanos-Tenant", nil)
	h := start(t, Config{Endpoints: []EndpointConfig{tenantEndpoint(rcv.url(),
		TenantConfig{Label: "team", Header: "THANOS-TENANT", Missing: MissingDrop})}}, nil)
	tg := newTarget(1)
	a := teamSeries(tg, "m", "p1", "a")
	none := teamSeries(tg, "m", "p2", "")
	h.w.Append([]model.Sample{a.at(1, 1), none.at(1, 1), none.at(2, 2), a.at(2, 2)})
	eventually(t, 5*time.Second, "tenant a's samples", func() bool { return rcv.count("a") == 2 })
	if got := h.metric("samples_dropped_total", map[string]string{"reason": reasonNoTenant}); got != 2 {
		t.Errorf("dropped no_tenant = %v, want 2", got)
	}
	if got := rcv.tenants(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("tenants %v, want [a]", got)
	}
}

func TestTenantRemoveLabel(t *testing.T) {
	rcv := newTenantReceiver(t, "X-Scope-Orgid", nil)
	h := start(t, Config{Endpoints: []EndpointConfig{
		tenantEndpoint(rcv.url(), TenantConfig{Label: "team", Default: "other", RemoveLabel: true})}}, nil)
	tg := newTarget(1)
	a := teamSeries(tg, "m", "p1", "a")
	a2 := teamSeries(tg, "m2", "p1", "a") // same run as a
	b := teamSeries(tg, "m", "p2", "b", "zone", "z1")
	none := teamSeries(tg, "m", "p3", "")
	// The tenant label first: a name sorting before __name__.
	up := tg.series(pairs("Team", "c", "__name__", "up", "job", "kubelet")...)
	onlyTeam := tg.series(pairs("__name__", "x", "team", "a")...)
	h.w.Append([]model.Sample{a.at(1, 1), a2.at(1, 2), b.at(1, 3), none.at(1, 4), onlyTeam.at(1, 6)})
	h.w.Append([]model.Sample{a.at(2, 1)})
	eventually(t, 5*time.Second, "all samples", func() bool {
		return rcv.count("a") == 4 && rcv.count("b") == 1 && rcv.count("other") == 1
	})
	want := map[string][]string{
		"a":     {"__name__=m,cluster=c1,namespace=ns-p1,pod=p1,", "__name__=m2,cluster=c1,namespace=ns-p1,pod=p1,", "__name__=x,"},
		"b":     {"__name__=m,cluster=c1,namespace=ns-p2,pod=p2,zone=z1,"},
		"other": {"__name__=m,cluster=c1,namespace=ns-p3,pod=p3,"},
	}
	for tn, keys := range want {
		got := slices.Sorted(func(yield func(string) bool) {
			for k := range rcv.got(tn) {
				if !yield(k) {
					return
				}
			}
		})
		if !slices.Equal(got, keys) {
			t.Errorf("tenant %s got series %q, want %q", tn, got, keys)
		}
	}
	if got := timestamps(rcv.got("a")["__name__=m,cluster=c1,namespace=ns-p1,pod=p1,"]); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("a's series timestamps %v, want [1 2]", got)
	}

	// A router told to use the uppercase label: the first label is the tenant.
	r := newTenantRouter(TenantConfig{Label: "Team", Missing: MissingDrop, RemoveLabel: true})
	lc := r.lineage(up.Table, time.Now())
	if m := r.tenantOf(lc, up.Table, up.Ref); m == noTenant || r.names[m-tenantBase] != "c" {
		t.Fatalf("tenant of %s: mark %d", seriesKey(up), m)
	}
	s := r.strip(lc, up.Table, up.Ref)
	st := lc.shadow.Table()
	if got := string(st.AppendEncoded(nil, s)); got != string(model.AppendLabel(model.AppendLabel(nil, "__name__", "up"), "job", "kubelet")) {
		t.Errorf("stripped first-label series encodes as %q", got)
	}
	if !s.Valid() {
		t.Errorf("stripped series lost its validity")
	}
}

// One tenant's 429s back it off alone: the others keep flowing while it
// retries, and when it recovers its samples arrive in order.
func TestTenantFairness(t *testing.T) {
	var mu sync.Mutex
	limited := true
	rcv := newTenantReceiver(t, "X-Scope-Orgid", func(tenant string, n int) int {
		mu.Lock()
		defer mu.Unlock()
		if tenant == "noisy" && limited {
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	e := tenantEndpoint(rcv.url(), TenantConfig{Label: "team", Missing: MissingDrop})
	e.Queue.MinBackoff, e.Queue.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	e.Queue.Shards = 1 // one worker: a blocking retry would stall everybody
	h := start(t, Config{Endpoints: []EndpointConfig{e}}, nil)
	tg := newTarget(1)
	noisy := teamSeries(tg, "m", "p1", "noisy")
	quiet := teamSeries(tg, "m", "p2", "quiet")
	begin := time.Now()
	for i := range 20 {
		h.w.Append([]model.Sample{noisy.at(int64(i), 1), quiet.at(int64(i), 1)})
		time.Sleep(5 * time.Millisecond)
	}
	eventually(t, 3*time.Second, "quiet's samples", func() bool { return rcv.count("quiet") == 20 })
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("quiet took %s with noisy backed off", d)
	}
	if rcv.count("noisy") != 0 {
		t.Fatal("noisy accepted while limited")
	}
	if got := h.metric("tenant_backoff", map[string]string{"tenant": "noisy"}); got != 1 {
		t.Errorf("tenant_backoff{noisy} = %v, want 1", got)
	}
	if got := h.metric("tenant_samples_retried_total", map[string]string{"tenant": "noisy"}); got == 0 {
		t.Error("noisy's retries not counted")
	}
	if got := h.metric("tenant_samples_retried_total", map[string]string{"tenant": "quiet"}); got != 0 {
		t.Errorf("quiet retried %v samples", got)
	}
	mu.Lock()
	limited = false
	mu.Unlock()
	eventually(t, 3*time.Second, "noisy's samples after the limit", func() bool { return rcv.count("noisy") == 20 })
	if got := timestamps(rcv.got("noisy")[seriesKey(noisy)]); !slices.Equal(got, rangeTS(0, 19)) {
		t.Errorf("noisy's timestamps %v: out of order or lost", got)
	}
}

// A 400 drops the batch, counted for the tenant, and backs that tenant off.
func TestTenantRejection(t *testing.T) {
	rcv := newTenantReceiver(t, "X-Scope-Orgid", func(tenant string, n int) int {
		if tenant == "bad" {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	h := start(t, Config{Endpoints: []EndpointConfig{tenantEndpoint(rcv.url(), TenantConfig{Label: "team", Missing: MissingDrop})}}, nil)
	tg := newTarget(1)
	bad, good := teamSeries(tg, "m", "p1", "bad"), teamSeries(tg, "m", "p2", "good")
	h.w.Append([]model.Sample{bad.at(1, 1), good.at(1, 1)})
	eventually(t, 3*time.Second, "the rejection counted", func() bool {
		return h.metric("tenant_samples_dropped_total", map[string]string{"tenant": "bad", "reason": "http_400"}) == 1
	})
	eventually(t, 3*time.Second, "good delivered", func() bool { return rcv.count("good") == 1 })
	if got := h.metric("samples_failed_total", nil); got != 1 {
		t.Errorf("samples_failed_total = %v, want 1", got)
	}
}

// A relabelled namespace: the series' old identity's stale marker goes to
// the old tenant, its new identity to the new one.
func TestTenantStaleMarkerRoutesByOldLabels(t *testing.T) {
	rcv := newTenantReceiver(t, "X-Scope-Orgid", nil)
	h := start(t, Config{Endpoints: []EndpointConfig{tenantEndpoint(rcv.url(), TenantConfig{Label: "team", Missing: MissingDrop})}}, nil)
	tg := newTarget(1)
	old := teamSeries(tg, "m", "p1", "frontend")
	h.w.Append([]model.Sample{old.at(1000, 1)})
	moved := teamSeries(tg, "m", "p1", "backend") // same interner, after the relabel
	stale := math.Float64frombits(value.StaleNaN)
	h.w.Append([]model.Sample{{Table: moved.Table, Ref: old.Ref, T: 2000, V: stale}, moved.at(2000, 1)})
	eventually(t, 3*time.Second, "both tenants", func() bool { return rcv.count("frontend") == 2 && rcv.count("backend") == 1 })
	got := rcv.got("frontend")[seriesKey(old)]
	if len(got) != 2 || !value.IsStaleNaN(got[1].Value) || got[1].Timestamp != 2000 {
		t.Errorf("frontend's series %v: want its stale marker at 2000", got)
	}
}

// HA: with cluster/__replica__ external labels every request's series, the
// first one included, carry the one pair.
func TestTenantHAPairPerRequest(t *testing.T) {
	rcv := newTenantReceiver(t, "X-Scope-Orgid", func(tenant string, n int) int {
		if n > 1 {
			return http.StatusAccepted // the HA tracker keeps the other replica
		}
		return http.StatusOK
	})
	e := tenantEndpoint(rcv.url(), TenantConfig{Label: "team", Missing: MissingDrop})
	e.Queue.MaxSamplesPerSend = 7
	h := start(t, Config{Endpoints: []EndpointConfig{e}}, nil)
	tg := newTarget(1)
	var batch []model.Sample
	for i := range 30 {
		s := teamSeries(tg, "m", fmt.Sprint("p", i), []string{"x", "y", "z"}[i%3], "__replica__", "r1")
		batch = append(batch, s.at(1, 1))
	}
	h.w.Append(batch)
	eventually(t, 3*time.Second, "all delivered", func() bool {
		return rcv.count("x")+rcv.count("y")+rcv.count("z") == 30
	})
	rcv.mu.Lock()
	for i, req := range rcv.reqs {
		for _, ls := range req {
			if ls["cluster"] != "c1" || ls["__replica__"] != "r1" || ls["team"] != req[0]["team"] {
				t.Errorf("request %d: series %v, first %v: not one tenant and one HA pair", i, ls, req[0])
			}
		}
	}
	rcv.mu.Unlock()
	if got := h.metric("tenant_samples_deduplicated_total", nil); got == 0 {
		t.Error("202s not counted as deduplicated")
	}
	if got := h.metric("samples_dropped_total", nil); got != 0 {
		t.Errorf("dropped %v: a 202 is no loss", got)
	}
}

// A tenant that stops sending is forgotten after the idle timeout: its
// queue, its metric series, its cached answers.
func TestTenantEviction(t *testing.T) {
	rcv := newTenantReceiver(t, "X-Scope-Orgid", nil)
	e := tenantEndpoint(rcv.url(), TenantConfig{Label: "team", Missing: MissingDrop, IdleTimeout: time.Minute, MaxTenants: 3})
	e.Queue.MaxSamplesPerSend = 1 // due at once: the fake clock does not move the batch deadline
	var clock struct {
		sync.Mutex
		t time.Time
	}
	clock.t = time.Now()
	now := func() time.Time { clock.Lock(); defer clock.Unlock(); return clock.t }
	advance := func(d time.Duration) { clock.Lock(); clock.t = clock.t.Add(d); clock.Unlock() }
	h := start(t, Config{Endpoints: []EndpointConfig{e}}, func(w *Writer) { w.tenantQueues[0].now = now })
	q := h.w.tenantQueues[0]
	send := func(tg *target, teams ...string) {
		var batch []model.Sample
		for i, tn := range teams {
			batch = append(batch, teamSeries(tg, "m", fmt.Sprint("p", i), tn).at(now().UnixMilli(), 1))
		}
		h.w.Append(batch)
	}
	tg1 := newTarget(1)
	send(tg1, "a", "b", "c", "d") // d: over max_tenants
	eventually(t, 3*time.Second, "a, b, c", func() bool { return rcv.count("a")+rcv.count("b")+rcv.count("c") == 3 })
	// The workers note a send's end (tenant last active) after the receiver has answered:
	// wait for that before moving the clock, or a tenant looks active 30s later.
	settled := func() bool { return q.length() == 0 }
	eventually(t, 3*time.Second, "sends settled", settled)
	if got := h.metric("samples_dropped_total", map[string]string{"reason": reasonTenantLimit}); got != 1 {
		t.Errorf("tenant_limit drops = %v, want 1", got)
	}
	advance(30 * time.Second)
	tg2 := newTarget(2)
	send(tg2, "a")
	eventually(t, 3*time.Second, "a again", func() bool { return rcv.count("a") == 2 })
	eventually(t, 3*time.Second, "sends settled", settled)
	advance(45 * time.Second) // b and c idle for 75s, a for 45s
	send(tg2, "d")
	eventually(t, 3*time.Second, "d admitted once b and c are forgotten", func() bool { return rcv.count("d") == 1 })
	if got := q.liveTenants(); got != 2 {
		t.Errorf("%d tenants live, want 2 (a, d)", got)
	}
	if got := h.metric("tenant_samples_sent_total", map[string]string{"tenant": "b"}); got != 0 {
		t.Errorf("forgotten tenant b still has metric series (%v)", got)
	}
	q.mu.Lock()
	_, kept := q.router.lineages[tg1.in.Table().ID]
	q.mu.Unlock()
	if kept {
		t.Error("the unused lineage's cache was kept")
	}
	// Churn through many tenant names: the ID space stays bounded.
	for i := range 200 {
		advance(2 * time.Minute)
		send(newTarget(uint64(10+i)), fmt.Sprint("t", i))
	}
	q.mu.Lock()
	names, slots := len(q.router.names), len(q.tenants)
	q.mu.Unlock()
	if names > 2*3+64+3 || slots > names {
		t.Errorf("after churn: %d tenant names, %d slots: not compacted", names, slots)
	}
}

// When the shared capacity is full, the tenant holding the most loses its
// oldest samples, not the others.
func TestTenantCapacityLargestLoses(t *testing.T) {
	rcv := newTenantReceiver(t, "X-Scope-Orgid", func(tenant string, n int) int {
		if tenant == "stuck" {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	e := tenantEndpoint(rcv.url(), TenantConfig{Label: "team", Missing: MissingDrop})
	e.Queue.Capacity, e.Queue.MaxSamplesPerSend = 50, 10
	h := start(t, Config{Endpoints: []EndpointConfig{e}}, nil)
	tg := newTarget(1)
	stuck, ok := teamSeries(tg, "m", "p1", "stuck"), teamSeries(tg, "m", "p2", "ok")
	for i := range 100 {
		h.w.Append([]model.Sample{stuck.at(int64(i), 1), ok.at(int64(i), 1)})
		if i%10 == 9 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	eventually(t, 3*time.Second, "ok's samples", func() bool { return rcv.count("ok") == 100 })
	if got := h.metric("tenant_samples_dropped_total", map[string]string{"tenant": "ok"}); got != 0 {
		t.Errorf("ok lost %v samples", got)
	}
	if got := h.metric("tenant_samples_dropped_total", map[string]string{"tenant": "stuck", "reason": reasonQueueFull}); got == 0 {
		t.Error("stuck lost nothing to the full queue")
	}
	if got := h.metric("tenant_queue_length", map[string]string{"tenant": "stuck"}); got > 50+10 {
		t.Errorf("stuck holds %v samples, capacity 50", got)
	}
}

func TestTenantConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    TenantConfig
		hdr  map[string]string
		want []string // substrings of the error; none: valid
	}{
		{"valid default", TenantConfig{Label: "team", Default: "d"}, nil, nil},
		{"valid drop thanos", TenantConfig{Label: "team", Missing: MissingDrop, Header: "THANOS-TENANT"}, nil, nil},
		{"no default", TenantConfig{Label: "team"}, nil, []string{"tenant.default: required"}},
		{"default with drop", TenantConfig{Label: "team", Missing: MissingDrop, Default: "x"}, nil, []string{"tenant.default: is set"}},
		{"bad missing", TenantConfig{Label: "team", Missing: "keep", Default: "x"}, nil, []string{"tenant.missing: must be"}},
		{"bad label", TenantConfig{Label: "te-am", Default: "x"}, nil, []string{"tenant.label"}},
		{"name label", TenantConfig{Label: "__name__", Default: "x"}, nil, []string{"tenant.label"}},
		{"bad default", TenantConfig{Label: "team", Default: "a|b"}, nil, []string{"tenant.default", "'|'"}},
		{"bad header", TenantConfig{Label: "team", Default: "x", Header: "Content-Type"}, nil, []string{"tenant.header"}},
		{"static tenant header", TenantConfig{Label: "team", Default: "x"}, map[string]string{"X-Scope-OrgID": "a"}, []string{"headers:", "tenant header"}},
		{"settings without label", TenantConfig{Default: "x"}, nil, []string{"tenant.label: required"}},
		{"negative max", TenantConfig{Label: "team", Default: "x", MaxTenants: -1}, nil, []string{"tenant.max_tenants"}},
		{"negative idle", TenantConfig{Label: "team", Default: "x", IdleTimeout: -time.Second}, nil, []string{"tenant.idle_timeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testEndpoint("http://127.0.0.1:1/push")
			e.Tenant, e.Headers = tc.t, tc.hdr
			err := (&Config{Endpoints: []EndpointConfig{e}}).Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestTenantConfigFile(t *testing.T) {
	eps, err := parseConfigFile([]byte(`
endpoints:
  - url: http://cortex:9009/api/v1/push
    tenant: {label: team, default: platform, remove_label: true, max_tenants: 50, idle_timeout: 5m}
  - url: http://thanos:19291/api/v1/receive
    tenant: {label: team, header: THANOS-TENANT, missing: drop}
  - url: http://plain/push
`), "rw.yaml", testEndpoint(""))
	if err != nil {
		t.Fatal(err)
	}
	want := []TenantConfig{
		{Label: "team", Default: "platform", RemoveLabel: true, MaxTenants: 50, IdleTimeout: 5 * time.Minute},
		{Label: "team", Header: "THANOS-TENANT", Missing: MissingDrop},
		{},
	}
	for i, e := range eps {
		if e.Tenant != want[i] {
			t.Errorf("endpoint %d: tenant %+v, want %+v", i, e.Tenant, want[i])
		}
	}
	if err := (&Config{Endpoints: eps}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"endpoints:\n  - url: http://x/push\n    tenant: {lable: team}\n", `unknown field "lable"`},
		{"endpoints:\n  - url: http://x/push\n    tenant: {default: x}\n", "tenant.label: required"},
	} {
		_, err := parseConfigFile([]byte(bad.yaml), "rw.yaml", testEndpoint(""))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want %q", bad.yaml, err, bad.want)
		}
	}
	// A validation error names the file, the endpoint and the field.
	eps, _ = parseConfigFile([]byte("endpoints:\n  - url: http://x/push\n    tenant: {label: team}\n"), "rw.yaml", testEndpoint(""))
	err = (&Config{Endpoints: eps}).Validate()
	if err == nil || !strings.Contains(err.Error(), "rw.yaml: endpoints[0]): tenant.default") {
		t.Errorf("error %v: want the file, endpoint and field named", err)
	}
}

// Shutdown flushes every tenant's partial batch; a tenant the receiver keeps
// refusing is given up when the shutdown timeout passes, and counted.
func TestTenantShutdown(t *testing.T) {
	rcv := newTenantReceiver(t, "X-Scope-Orgid", func(tenant string, n int) int {
		if tenant == "down" {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	e := tenantEndpoint(rcv.url(), TenantConfig{Label: "team", Missing: MissingDrop})
	e.Queue.BatchSendDeadline = time.Hour // only the shutdown flush sends
	h := start(t, Config{Endpoints: []EndpointConfig{e}, ShutdownTimeout: 300 * time.Millisecond}, nil)
	tg := newTarget(1)
	var batch []model.Sample
	for i, tn := range []string{"a", "b", "c", "down", "a"} {
		batch = append(batch, teamSeries(tg, "m", fmt.Sprint("p", i), tn).at(1, 1))
	}
	h.w.Append(batch)
	took, err := h.stop()
	if err == nil || !strings.Contains(err.Error(), "1 samples dropped at shutdown") {
		t.Errorf("Run: %v, want 1 sample (tenant down's) given up", err)
	}
	if took > 2*time.Second {
		t.Errorf("shutdown took %s with a 300ms timeout", took)
	}
	if got := rcv.count("a") + rcv.count("b") + rcv.count("c"); got != 4 {
		t.Errorf("flushed %d samples of the healthy tenants, want 4", got)
	}
	if got := h.metric("tenant_samples_dropped_total", map[string]string{"tenant": "down", "reason": reasonShutdown}); got != 1 {
		t.Errorf("down's shutdown drops = %v, want 1", got)
	}
	h.w.Append(batch[:1])
	if got := h.metric("samples_dropped_total", map[string]string{"reason": reasonShutdown}); got != 2 {
		t.Errorf("shutdown drops after a late Append = %v, want 2", got)
	}
}
