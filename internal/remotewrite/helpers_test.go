package remotewrite

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

	"github.com/cespare/xxhash/v2"
	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/prompb"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/version"
)

// testSeries is one label set of a model.LabelTable, as a producer hands it over.
type testSeries struct {
	Table *model.LabelTable
	Ref   model.SeriesRef
}

// at is a sample of s.
func (s testSeries) at(t int64, v float64) model.Sample {
	return model.Sample{Table: s.Table, Ref: s.Ref, T: t, V: v}
}

// newSeries interns name/value pairs, in the order given (unsorted or broken
// sets give invalid references), in an interner of its own whose key is the
// hash of the labels: like the series of different targets, different series
// spread over the shards.
func newSeries(nameValues ...string) testSeries {
	ls := pairs(nameValues...)
	var key []byte
	for _, l := range ls {
		key = model.AppendLabel(key, l.Name, l.Value)
	}
	return newTarget(xxhash.Sum64(key)).series(ls...)
}

func pairs(nameValues ...string) []model.Label {
	var ls []model.Label
	for i := 0; i < len(nameValues); i += 2 {
		ls = append(ls, model.Label{Name: nameValues[i], Value: nameValues[i+1]})
	}
	return ls
}

// target is a producer: its series share one interner, hence one Key.
type target struct{ in *model.LabelInterner }

func newTarget(key uint64) *target { return &target{in: model.NewLabelInterner(key)} }

// series interns ls and returns it with the snapshot taken right after.
func (tg *target) series(ls ...model.Label) testSeries {
	ref := tg.in.Intern(ls)
	return testSeries{Table: tg.in.Table(), Ref: ref}
}

// seriesOf interns a (sorted) labels.Labels.
func (tg *target) seriesOf(ls labels.Labels) testSeries {
	var out []model.Label
	ls.Range(func(l labels.Label) { out = append(out, model.Label{Name: l.Name, Value: l.Value}) })
	return tg.series(out...)
}

type fixtureSeries struct {
	labels labels.Labels
	series testSeries
	t      int64
	v      float64
}

// loadFixture parses the cAdvisor excerpt into series as the scrape side
// builds them: empty labels dropped, target labels added, sorted, interned
// by one target.
func loadFixture(tb testing.TB) []fixtureSeries {
	tb.Helper()
	b, err := os.ReadFile("testdata/cadvisor-1_35-excerpt.txt")
	if err != nil {
		tb.Fatal(err)
	}
	out := parseExposition(tb, b, newTarget(1), map[string]string{
		"job":      "kubelet",
		"instance": "node-a-1.example.internal:10250",
		"node":     "node-a-1",
	}, 0)
	if len(out) < 100 {
		tb.Fatalf("fixture has only %d series", len(out))
	}
	return out
}

// parseExposition parses text exposition into series of tg, dropping empty
// labels and setting extra, keeping at most limit series (0: all).
func parseExposition(tb testing.TB, b []byte, tg *target, extra map[string]string, limit int) []fixtureSeries {
	tb.Helper()
	p := textparse.NewPromParser(b, labels.NewSymbolTable(), false)
	var out []fixtureSeries
	for limit == 0 || len(out) < limit {
		et, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		if et != textparse.EntrySeries {
			continue
		}
		var ls labels.Labels
		p.Labels(&ls)
		bld := labels.NewBuilder(ls)
		ls.Range(func(l labels.Label) {
			if l.Value == "" {
				bld.Del(l.Name)
			}
		})
		for k, v := range extra {
			bld.Set(k, v)
		}
		ls = bld.Labels()
		_, ts, v := p.Series()
		t := int64(1782468875000)
		if ts != nil {
			t = *ts
		}
		out = append(out, fixtureSeries{labels: ls, series: tg.seriesOf(ls), t: t, v: v})
	}
	return out
}

// decodeRequest snappy-decodes and unmarshals a request body.
func decodeRequest(body []byte) (*prompb.WriteRequest, error) {
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	var wr prompb.WriteRequest
	if err := wr.Unmarshal(raw); err != nil {
		return nil, fmt.Errorf("protobuf: %w", err)
	}
	return &wr, nil
}

// checkLabels enforces the rules every receiver applies to a series.
func checkLabels(ls []prompb.Label) error {
	hasName := false
	for i, l := range ls {
		if !model.IsValidLabelName(l.Name) {
			return fmt.Errorf("invalid label name %q", l.Name)
		}
		if l.Value == "" {
			return fmt.Errorf("label %q has an empty value", l.Name)
		}
		if i > 0 && ls[i-1].Name >= l.Name {
			return fmt.Errorf("labels not sorted or duplicate: %q then %q", ls[i-1].Name, l.Name)
		}
		if l.Name == "__name__" {
			hasName = true
		}
	}
	if !hasName {
		return fmt.Errorf("no __name__")
	}
	return nil
}

func labelsKey(ls []prompb.Label) string {
	var sb strings.Builder
	for _, l := range ls {
		sb.WriteString(l.Name)
		sb.WriteByte('=')
		sb.WriteString(l.Value)
		sb.WriteByte(',')
	}
	return sb.String()
}

// seriesKey is labelsKey for a series.
func seriesKey(s testSeries) string {
	var sb strings.Builder
	it := s.Table.Labels(s.Ref)
	for it.Next() {
		sb.Write(it.Name)
		sb.WriteByte('=')
		sb.Write(it.Value)
		sb.WriteByte(',')
	}
	return sb.String()
}

// response is what a receiver answers to one request.
type response struct {
	status int
	header map[string]string
	body   string
	hang   bool // block until the client gives up
}

// receiver is a remote-write endpoint that checks every request like a
// strict Prometheus/Mimir would, and records what it accepted.
type receiver struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	requests int                        // all requests
	samples  map[string][]prompb.Sample // accepted, by series
	accepted int                        // accepted samples
	headers  http.Header                // of the last request
	respond  func(n int) response       // n counts requests from 1
}

func newReceiver(t testing.TB, respond func(n int) response) *receiver {
	r := newUnstartedReceiver(t, respond)
	r.srv.Start()
	t.Cleanup(r.srv.Close)
	return r
}

func newUnstartedReceiver(t testing.TB, respond func(n int) response) *receiver {
	r := &receiver{t: t, samples: map[string][]prompb.Sample{}, respond: respond}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	return r
}

func (r *receiver) url() string { return r.srv.URL + "/api/v1/push" }

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return // the client went away
	}
	for k, want := range map[string]string{
		"Content-Encoding":                  "snappy",
		"Content-Type":                      "application/x-protobuf",
		"X-Prometheus-Remote-Write-Version": "0.1.0",
		"User-Agent":                        version.UserAgent(),
	} {
		if got := req.Header.Values(k); len(got) != 1 || got[0] != want {
			r.t.Errorf("header %s = %q, want exactly %q", k, got, want)
		}
	}
	if req.Method != http.MethodPost || req.URL.Path != "/api/v1/push" {
		r.t.Errorf("request %s %s", req.Method, req.URL.Path)
	}
	wr, err := decodeRequest(body)
	if err != nil {
		r.t.Errorf("undecodable request: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, ts := range wr.Timeseries {
		if err := checkLabels(ts.Labels); err != nil {
			r.t.Errorf("series %s: %v", labelsKey(ts.Labels), err)
		}
		if len(ts.Samples) == 0 {
			r.t.Errorf("series %s has no sample", labelsKey(ts.Labels))
		}
	}

	r.mu.Lock()
	r.requests++
	n := r.requests
	r.headers = req.Header.Clone()
	resp := response{status: http.StatusNoContent}
	if r.respond != nil {
		resp = r.respond(n)
	}
	if resp.status/100 == 2 {
		for _, ts := range wr.Timeseries {
			k := labelsKey(ts.Labels)
			r.samples[k] = append(r.samples[k], ts.Samples...)
			r.accepted += len(ts.Samples)
		}
	}
	r.mu.Unlock()

	if resp.hang {
		<-req.Context().Done()
		return
	}
	for k, v := range resp.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(resp.status)
	_, _ = io.WriteString(w, resp.body)
}

func (r *receiver) acceptedSamples() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepted
}

func (r *receiver) requestCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

func (r *receiver) samplesOf(s testSeries) []prompb.Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.samples[seriesKey(s)])
}

// testEndpoint is an endpoint with settings that keep tests fast.
func testEndpoint(url string) EndpointConfig {
	return EndpointConfig{
		URL:     url,
		Timeout: 2 * time.Second,
		Queue: QueueConfig{
			Capacity:          10_000,
			Shards:            2,
			MaxSamplesPerSend: 100,
			BatchSendDeadline: 10 * time.Millisecond,
			MinBackoff:        time.Millisecond,
			MaxBackoff:        10 * time.Millisecond,
		},
	}
}

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// count returns how many records' messages contain substr.
func (l *logRecorder) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.records {
		if strings.Contains(r.Message, substr) {
			n++
		}
	}
	return n
}

// harness runs a Writer for one test.
type harness struct {
	t      testing.TB
	w      *Writer
	reg    *prometheus.Registry
	logs   *logRecorder
	cancel context.CancelFunc
	done   chan error
}

// start builds a Writer for cfg; prepare (if not nil) runs before Run so
// that tests can swap hooks such as the retry sleep.
func start(t testing.TB, cfg Config, prepare func(*Writer)) *harness {
	t.Helper()
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	h := &harness{t: t, reg: prometheus.NewRegistry(), logs: &logRecorder{}, done: make(chan error, 1)}
	w, err := New(cfg, slog.New(h.logs), h.reg)
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	if prepare != nil {
		prepare(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return h
}

// stop cancels Run and returns its error and how long it took to return.
func (h *harness) stop() (time.Duration, error) {
	h.t.Helper()
	begin := time.Now()
	h.cancel()
	select {
	case err := <-h.done:
		h.done <- err // for Cleanup
		return time.Since(begin), err
	case <-time.After(10 * time.Second):
		h.t.Fatal("Run did not return within 10s of cancel")
		return 0, nil
	}
}

// metric returns the value of the counter or gauge name whose labels
// include want (0 when absent).
func (h *harness) metric(name string, want map[string]string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != metricPrefix+name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, want) {
				continue
			}
			switch {
			case m.Counter != nil:
				total += m.Counter.GetValue()
			case m.Gauge != nil:
				total += m.Gauge.GetValue()
			case m.Histogram != nil:
				total += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return total
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// sequence returns n samples of s with timestamps from t0, one per ms.
func sequence(s testSeries, t0 int64, n int) []model.Sample {
	out := make([]model.Sample, n)
	for i := range out {
		out[i] = s.at(t0+int64(i), float64(t0+int64(i)))
	}
	return out
}

// timestamps lists the samples' timestamps.
func timestamps(ss []prompb.Sample) []int64 {
	out := make([]int64, len(ss))
	for i, s := range ss {
		out[i] = s.Timestamp
	}
	return out
}

func rangeTS(from, to int64) []int64 {
	var out []int64
	for t := from; t <= to; t++ {
		out = append(out, t)
	}
	return out
}
