package loadbench

import (
	"bytes"
	"crypto/tls"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/fakekubelet"
)

func post(t *testing.T, url string, body []byte) int {
	t.Helper()
	resp, err := http.Post(url, "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func writeRequest(t *testing.T, series ...prompb.TimeSeries) []byte {
	t.Helper()
	wr := &prompb.WriteRequest{Timeseries: series}
	b, err := wr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, b)
}

func TestReceiverCounts(t *testing.T) {
	r, err := StartReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	a := []prompb.Label{{Name: "__name__", Value: "x"}, {Name: "team", Value: "frontend"}}
	b := []prompb.Label{{Name: "__name__", Value: "y"}}
	req1 := writeRequest(t,
		prompb.TimeSeries{Labels: a, Samples: []prompb.Sample{{Value: 1, Timestamp: 10}, {Value: 2, Timestamp: 20}}},
		prompb.TimeSeries{Labels: b, Samples: []prompb.Sample{{Value: 1, Timestamp: 10}}})
	if code := post(t, r.URL, req1); code != http.StatusNoContent {
		t.Fatalf("status %d", code)
	}
	// a goes back in time, b gets a stale marker.
	req2 := writeRequest(t,
		prompb.TimeSeries{Labels: a, Samples: []prompb.Sample{{Value: 3, Timestamp: 20}}},
		prompb.TimeSeries{Labels: b, Samples: []prompb.Sample{{Value: math.Float64frombits(value.StaleNaN), Timestamp: 30}}})
	if code := post(t, r.URL, req2); code != http.StatusNoContent {
		t.Fatalf("status %d", code)
	}
	if code := post(t, r.URL, []byte("not snappy")); code != http.StatusBadRequest {
		t.Fatalf("garbage: status %d, want 400", code)
	}
	s := r.Stats()
	want := ReceiverStats{Requests: 3, BadRequests: 1, WireBytes: int64(len(req1) + len(req2) + len("not snappy")),
		Samples: 5, StaleMarkers: 1, NotIncreasing: 1, WithLabel: 3, Series: 2}
	s.First, s.Last, s.DecodedBytes = time.Time{}, time.Time{}, 0
	if s != want {
		t.Fatalf("stats\n got %+v\nwant %+v", s, want)
	}
	r.Reset()
	if s := r.Stats(); s.Samples != 0 || s.Series != 0 {
		t.Fatalf("after Reset: %+v", s)
	}
}

// Concurrent requests: every sample counted once, series kept apart, and a series sent in
// order over several requests (one sender per series, as the relay's shards do) is never
// reported out of order.
func TestReceiverConcurrent(t *testing.T) {
	r, err := StartReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	const senders, reqs, perReq = 8, 20, 50
	done := make(chan int, senders)
	for g := range senders {
		go func() {
			code := http.StatusNoContent
			for i := range reqs {
				var ts []prompb.TimeSeries
				for j := range perReq {
					ts = append(ts, prompb.TimeSeries{
						Labels:  []prompb.Label{{Name: "__name__", Value: "m"}, {Name: "g", Value: strconv.Itoa(g)}, {Name: "j", Value: strconv.Itoa(j)}},
						Samples: []prompb.Sample{{Value: float64(i), Timestamp: int64(i)}},
					})
				}
				b, _ := (&prompb.WriteRequest{Timeseries: ts}).Marshal()
				resp, err := http.Post(r.URL, "application/x-protobuf", bytes.NewReader(snappy.Encode(nil, b)))
				if err != nil {
					code = -1
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					code = resp.StatusCode
				}
			}
			done <- code
		}()
	}
	for range senders {
		if code := <-done; code != http.StatusNoContent {
			t.Fatalf("status %d", code)
		}
	}
	s := r.Stats()
	if s.Requests != senders*reqs || s.Samples != senders*reqs*perReq || s.Series != senders*perReq || s.NotIncreasing != 0 || s.BadRequests != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestKubeletServes(t *testing.T) {
	tpl := mustTemplate(t)
	n := tpl.GenerateNode(DefaultWorkload(1), 0)
	c, err := n.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	for _, gz := range []bool{false, true} {
		ks, err := StartKubelets([]string{n.Name}, []*fakekubelet.Capture{c}, gz)
		if err != nil {
			t.Fatal(err)
		}
		k := ks.List[0]
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		get := func(token string) (int, []byte) {
			req, _ := http.NewRequest(http.MethodGet, "https://"+k.Addr+"/metrics/cadvisor", nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, body
		}
		if code, _ := get(""); code != http.StatusUnauthorized {
			t.Fatalf("no token: %d, want 401", code)
		}
		code, body := get("anything")
		if code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for _, f := range fams {
			got += len(f.Metric)
		}
		if got != n.Series || k.Scrapes() != 1 {
			t.Fatalf("gzip=%v: %d samples (want %d), %d scrapes", gz, got, n.Series, k.Scrapes())
		}
		if gz && k.ServedBytes() >= int64(len(body))/2 {
			t.Fatalf("gzip: served %d bytes for %d", k.ServedBytes(), len(body))
		}
		ks.Stop()
	}
}

// The other kubelet endpoints are served when asked for, each with its own capture and
// counter; /metrics/cadvisor's count is not touched.
func TestKubeletServesOtherEndpoints(t *testing.T) {
	ks := startNodeKubelet(t, mustTemplate(t).GenerateNode(DefaultWorkload(1), 0))
	k := ks.List[0]
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(path string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+k.Addr+path, nil)
		req.Header.Set("Authorization", "Bearer x")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	if code, _ := get("/metrics/resource"); code != http.StatusNotFound {
		t.Fatalf("not configured: %d, want 404", code)
	}
	for _, e := range []struct{ path, capture string }{{"/metrics/resource", "resource-1_35"}, {"/metrics/probes", "probes-1_35"}, {"/metrics", "kubelet-metrics"}} {
		data, err := fakekubelet.ReadCapture(e.capture)
		if err != nil {
			t.Fatal(err)
		}
		ec, err := fakekubelet.Prepare(data, fakekubelet.RewriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ks.ServeEndpoint(e.path, []*fakekubelet.Capture{ec})
		code, body := get(e.path)
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
		if code != http.StatusOK || err != nil {
			t.Fatalf("%s: %d %v", e.path, code, err)
		}
		if len(fams) == 0 {
			t.Fatalf("%s: no families", e.path)
		}
		got := 0 // sample lines (a histogram is one metric of many lines)
		for _, l := range bytes.Split(body, []byte("\n")) {
			if len(l) > 0 && l[0] != '#' {
				got++
			}
		}
		if got != ec.Series || k.EndpointScrapes(e.path) != 1 {
			t.Fatalf("%s: %d samples (want %d), %d scrapes", e.path, got, ec.Series, k.EndpointScrapes(e.path))
		}
	}
	if k.Scrapes() != 0 {
		t.Fatalf("cadvisor scrapes %d, want 0", k.Scrapes())
	}
}

func TestProcStatusOfThisProcess(t *testing.T) {
	rss, hwm, err := ProcMem(os.Getpid())
	if err != nil || rss <= 0 || hwm < rss {
		t.Fatalf("ProcMem: rss %d, hwm %d, %v", rss, hwm, err)
	}
	anon, file, err := ProcRssSplit(os.Getpid())
	if err != nil || anon <= 0 || file <= 0 || anon+file > hwm+(64<<20) {
		t.Fatalf("ProcRssSplit: anon %d, file %d (hwm %d), %v", anon, file, hwm, err)
	}
	if _, _, err := ProcMem(-1); err == nil {
		t.Fatal("ProcMem(-1): no error")
	}
}

// startNodeKubelet serves node n from one simulated kubelet (identity encoding), stopped
// when the test ends.
func startNodeKubelet(t *testing.T, n *Node) *Kubelets {
	t.Helper()
	c, err := n.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	ks, err := StartKubelets([]string{n.Name}, []*fakekubelet.Capture{c}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ks.Stop)
	return ks
}
