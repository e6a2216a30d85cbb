package promconfig

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/remotewrite"
)

// receiver is a remote-write endpoint on 127.0.0.1 that records what it got.
type receiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	headers  []http.Header
	series   map[string]int // labels as text -> samples
	metadata map[string]prompb.MetricMetadata
	sizes    []int
}

func newReceiver(t *testing.T, tlsServer bool) *receiver {
	r := &receiver{series: map[string]int{}, metadata: map[string]prompb.MetricMetadata{}}
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var wr prompb.WriteRequest
		if err := wr.Unmarshal(raw); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.headers = append(r.headers, req.Header.Clone())
		n := 0
		for _, ts := range wr.Timeseries {
			var parts []string
			for _, l := range ts.Labels {
				parts = append(parts, l.Name+"="+l.Value)
			}
			r.series[strings.Join(parts, ",")] += len(ts.Samples)
			n += len(ts.Samples)
		}
		if n > 0 {
			r.sizes = append(r.sizes, n)
		}
		for _, m := range wr.Metadata {
			r.metadata[m.MetricFamilyName] = m
		}
		w.WriteHeader(http.StatusNoContent)
	})
	if tlsServer {
		r.srv = httptest.NewTLSServer(h)
	} else {
		r.srv = httptest.NewServer(h)
	}
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) snapshot() (hs []http.Header, series map[string]int, md map[string]prompb.MetricMetadata, sizes []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	series, md = map[string]int{}, map[string]prompb.MetricMetadata{}
	for k, v := range r.series {
		series[k] = v
	}
	for k, v := range r.metadata {
		md[k] = v
	}
	return slices.Clone(r.headers), series, md, slices.Clone(r.sizes)
}

// fill writes a fixture with {{URL}}, {{TOKEN_URL}} and {{DIR}} filled in.
func fill(t *testing.T, fixture, dir string, vars map[string]string) string {
	b, err := os.ReadFile(filepath.Join("testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "{{DIR}}", dir)
	for k, v := range vars {
		s = strings.ReplaceAll(s, "{{"+k+"}}", v)
	}
	p := filepath.Join(dir, fixture)
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type staticMetadata []remotewrite.Metadata

func (s staticMetadata) AppendMetadata(dst []remotewrite.Metadata) []remotewrite.Metadata {
	return append(dst, s...)
}

// samples are what a scrape of one target would hand remote write.
func samples(t *testing.T) []model.Sample {
	in := model.NewLabelInterner(7)
	var refs []model.SeriesRef
	for _, ls := range [][]model.Label{
		{{Name: "__name__", Value: "container_cpu_usage_seconds_total"}, {Name: "id", Value: "/a"}, {Name: "namespace", Value: "frontend-service1"}, {Name: "team", Value: "frontend"}},
		{{Name: "__name__", Value: "container_memory_working_set_bytes"}, {Name: "id", Value: "/b"}, {Name: "namespace", Value: "backend-service"}, {Name: "team", Value: "backend"}},
		{{Name: "__name__", Value: "expensive_histogram_bucket"}, {Name: "le", Value: "1"}, {Name: "namespace", Value: "backend-service"}},
	} {
		refs = append(refs, in.Intern(ls))
	}
	tab := in.Table()
	now := time.Now().UnixMilli()
	var out []model.Sample
	for i := range 4 {
		for _, r := range refs {
			out = append(out, model.Sample{Table: tab, Ref: r, T: now + int64(i), V: float64(i)})
		}
	}
	return out
}

func TestPrometheusRemoteWriteBlocks(t *testing.T) {
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if !ok || id != "123" || secret != "456" || r.FormValue("grant_type") != "client_credentials" {
			http.Error(w, "bad client", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"oauth-token-1","token_type":"Bearer","expires_in":3600}`)
	}))
	defer tokenSrv.Close()

	type want struct {
		auth    string
		authPfx string // when auth is not known in advance (signatures)
		headers map[string]string
		series  []string // exactly these series arrive
		md      []string // metadata families
		maxSize int
	}
	all := []string{
		"__name__=container_cpu_usage_seconds_total,id=/a,namespace=frontend-service1,team=frontend",
		"__name__=container_memory_working_set_bytes,id=/b,namespace=backend-service,team=backend",
		"__name__=expensive_histogram_bucket,le=1,namespace=backend-service",
	}
	for _, tc := range []struct {
		fixture string
		tls     bool
		want    want
	}{
		{"basic_auth.yml", false, want{auth: "Basic " + base64.StdEncoding.EncodeToString([]byte("prometheus:s3cret")), series: all}},
		{"authorization.yml", false, want{auth: "Bearer file-token", headers: map[string]string{"X-Scope-Orgid": "team-a"}, series: all}},
		{"oauth2_relabel.yml", false, want{auth: "Bearer oauth-token-1", series: all[:2]}},
		{"sigv4.yml", false, want{authPfx: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/", headers: map[string]string{"X-Amz-Date": ""}, series: all}},
		{"tls_ca.yml", true, want{headers: map[string]string{"Name": "value"}, series: all}},
		{"queue_relabel_metadata.yml", false, want{
			series: []string{
				"__name__=container_cpu_usage_seconds_total,namespace=frontend-service1,team=frontend,tenant=frontend",
				"__name__=container_memory_working_set_bytes,namespace=backend-service,team=backend,tenant=backend",
				"__name__=expensive_histogram_bucket,le=1,namespace=backend-service,tenant=backend",
			},
			md:      []string{"container_cpu_usage_seconds_total", "expensive_histogram"},
			maxSize: 3,
		}},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			rcv := newReceiver(t, tc.tls)
			dir := t.TempDir()
			for name, v := range map[string]string{"password": "s3cret\n", "token": "file-token\n"} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tc.tls {
				ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rcv.srv.Certificate().Raw})
				if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			path := fill(t, tc.fixture, dir, map[string]string{"URL": rcv.srv.URL + "/api/v1/push", "TOKEN_URL": tokenSrv.URL + "/token"})
			defaults := remotewrite.EndpointConfig{Timeout: remotewrite.DefaultTimeout, Queue: remotewrite.DefaultQueueConfig()}
			f, err := Load(path, defaults)
			if err != nil {
				t.Fatal(err)
			}
			g, err := remotewrite.NewGroup(remotewrite.Config{Endpoints: f.Endpoints, ShutdownTimeout: 5 * time.Second}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			g.SetMetadataSource(staticMetadata{
				{Family: "container_cpu_usage_seconds_total", Type: "counter", Help: "Cumulative cpu time consumed in seconds."},
				{Family: "expensive_histogram", Type: "histogram", Help: "h"},
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- g.Run(ctx) }()
			g.Append(samples(t))
			deadline := time.Now().Add(10 * time.Second)
			for {
				_, series, md, _ := rcv.snapshot()
				got := 0
				for _, n := range series {
					got += n
				}
				if got >= 4*len(tc.want.series) && len(md) >= len(tc.want.md) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("receiver got %d samples %v, metadata %v; want %d samples", got, series, md, 4*len(tc.want.series))
				}
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			hs, series, md, sizes := rcv.snapshot()
			var gotSeries []string
			for k, n := range series {
				gotSeries = append(gotSeries, k)
				if n != 4 {
					t.Errorf("series %s: %d samples, want 4", k, n)
				}
			}
			slices.Sort(gotSeries)
			if !slices.Equal(gotSeries, tc.want.series) {
				t.Errorf("series:\n got %q\nwant %q", gotSeries, tc.want.series)
			}
			for _, h := range hs {
				if got := h.Get("Authorization"); tc.want.authPfx != "" {
					if !strings.HasPrefix(got, tc.want.authPfx) {
						t.Errorf("Authorization %q, want prefix %q", got, tc.want.authPfx)
					}
				} else if got != tc.want.auth {
					t.Errorf("Authorization %q, want %q", got, tc.want.auth)
				}
				for k, v := range tc.want.headers {
					if v == "" { // present is enough
						if h.Get(k) == "" {
							t.Errorf("header %s missing", k)
						}
						continue
					}
					if h.Get(k) != v {
						t.Errorf("header %s=%q, want %q", k, h.Get(k), v)
					}
				}
				if h.Get("X-Prometheus-Remote-Write-Version") != "0.1.0" || h.Get("Content-Encoding") != "snappy" {
					t.Errorf("protocol headers missing: %v", h)
				}
			}
			for _, name := range tc.want.md {
				if _, ok := md[name]; !ok {
					t.Errorf("no metadata for %s: %v", name, md)
				}
			}
			if m, ok := md["container_cpu_usage_seconds_total"]; ok && (m.Type != prompb.MetricMetadata_COUNTER || m.Help != "Cumulative cpu time consumed in seconds.") {
				t.Errorf("metadata %+v", m)
			}
			for _, n := range sizes {
				if tc.want.maxSize > 0 && n > tc.want.maxSize {
					t.Errorf("a request held %d samples, max_samples_per_send is %d", n, tc.want.maxSize)
				}
			}
		})
	}
}

func TestLoadMapsAndLocates(t *testing.T) {
	defaults := remotewrite.EndpointConfig{Timeout: remotewrite.DefaultTimeout, Queue: remotewrite.DefaultQueueConfig()}
	dir := t.TempDir()
	p := fill(t, "queue_relabel_metadata.yml", dir, map[string]string{"URL": "http://127.0.0.1:1/push"})
	f, err := Load(p, defaults)
	if err != nil {
		t.Fatal(err)
	}
	e := f.Endpoints[0]
	q := e.Queue
	if q.Shards != 2 || q.Capacity != 5000 || q.MaxSamplesPerSend != 3 || q.BatchSendDeadline != 50*time.Millisecond || e.Timeout != 10*time.Second {
		t.Errorf("queue_config mapped to %+v, timeout %s", q, e.Timeout)
	}
	if e.Origin.Line != 4 || e.Origin.File != p {
		t.Errorf("origin %+v", e.Origin)
	}
	p = fill(t, "basic_auth.yml", dir, map[string]string{"URL": "http://127.0.0.1:1/push"})
	if f, err = Load(p, defaults); err != nil {
		t.Fatal(err)
	}
	if len(f.ExternalLabels) != 1 || f.ExternalLabels[0] != (model.Label{Name: "cluster", Value: "prod-eu"}) {
		t.Errorf("external labels %v", f.ExternalLabels)
	}
	// Left-out queue settings are the relay's defaults, not Prometheus's.
	if f.Endpoints[0].Queue.Shards != remotewrite.DefaultShards() || f.Endpoints[0].Queue.Capacity != remotewrite.DefaultQueueCapacity {
		t.Errorf("defaults not kept: %+v", f.Endpoints[0].Queue)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"remote_write:\n  - url: http://x/push\n    bogus: 1\n", ":3: field bogus not found"},
		{"global:\n  scrape_interval: 15s\nremote_write:\n  - url: http://x/push\n  - name: second\n", ":5: remote_write[1]: url for remote_write is empty"},
		{"remote_write:\n  - url: http://x/push\n    basic_auth: {username: a, password: b}\n    authorization: {credentials: c}\n", ":2: remote_write[0]: at most one of basic_auth, oauth2 & authorization"},
		{"remote_write:\n  - url: http://x/push\n    protobuf_message: io.prometheus.write.v2.Request\n", ":2: remote_write[0]: protobuf_message: only prometheus.WriteRequest"},
		{"remote_write:\n  - url: http://x/push\n    queue_config: {sample_age_limit: 1m}\n", ":2: remote_write[0]: queue_config.sample_age_limit: not supported"},
		{"remote_write:\n  - url: http://x/push\n    write_relabel_configs:\n      - action: replace\n        regex: '('\n", ":2: remote_write[0]: error parsing regexp"},
		{"scrape_configs: []\n", ":1: field scrape_configs not found"},
	} {
		p := filepath.Join(dir, "bad.yml")
		if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p, defaults)
		if err == nil || !strings.Contains(err.Error(), p+tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, p+tc.want)
		}
	}
}

// TestAzureADClientBuilds: azuread is Prometheus's own round tripper; its
// token comes from Azure at the first request, so offline only loading and
// building the client are checked.
func TestAzureADClientBuilds(t *testing.T) {
	defaults := remotewrite.EndpointConfig{Timeout: remotewrite.DefaultTimeout, Queue: remotewrite.DefaultQueueConfig()}
	f, err := Load(filepath.Join("testdata", "azuread.yml"), defaults)
	if err != nil {
		t.Fatal(err)
	}
	if f.Endpoints[0].Prom.AzureAD == nil || f.Endpoints[0].Prom.AzureAD.ManagedIdentity == nil {
		t.Fatalf("azuread not read: %+v", f.Endpoints[0].Prom)
	}
	cfg := remotewrite.Config{Endpoints: f.Endpoints}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

// Prometheus's remote_write has no tenant field: the flags' tenant routing
// (in defaults) applies to every entry.
func TestLoadTenantFromFlags(t *testing.T) {
	tc := remotewrite.TenantConfig{Label: "team", Default: "platform"}
	defaults := remotewrite.EndpointConfig{Timeout: remotewrite.DefaultTimeout, Queue: remotewrite.DefaultQueueConfig(), Tenant: tc}
	p := fill(t, "queue_relabel_metadata.yml", t.TempDir(), map[string]string{"URL": "http://127.0.0.1:1/push"})
	f, err := Load(p, defaults)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range f.Endpoints {
		if e.Tenant != tc {
			t.Errorf("endpoint %s: tenant %+v, want the flags' %+v", e.URL, e.Tenant, tc)
		}
	}
	if err := (&remotewrite.Config{Endpoints: f.Endpoints}).Validate(); err != nil {
		t.Errorf("a tenant-routed endpoint with metadata_config: %v", err)
	}
}
