package remotewrite

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

	"github.com/prometheus/prometheus/model/value"
)

func TestRetriesOn5xxAndLosesNothing(t *testing.T) {
	rcv := newReceiver(t, func(n int) response {
		if n <= 3 {
			return response{status: http.StatusInternalServerError, body: "try later"}
		}
		return response{status: http.StatusOK}
	})
	ep := testEndpoint(rcv.url())
	h := start(t, Config{Endpoints: []EndpointConfig{ep}}, nil)
	s := newSeries("__name__", "m", "job", "a")
	h.w.Append(sequence(s, 1, 50))
	eventually(t, 3*time.Second, "all samples accepted", func() bool { return rcv.acceptedSamples() == 50 })
	if _, err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if got := timestamps(rcv.samplesOf(s)); !slices.Equal(got, rangeTS(1, 50)) {
		t.Fatalf("received %v", got)
	}
	l := map[string]string{"remote_name": ep.URL}
	if got := h.metric("samples_sent_total", l); got != 50 {
		t.Errorf("samples_sent_total = %v, want 50", got)
	}
	if got := h.metric("samples_retried_total", l); got < 3 {
		t.Errorf("samples_retried_total = %v, want >= 3 (three failed requests)", got)
	}
	if got := h.metric("request_duration_seconds", map[string]string{"code": "500"}); got != 3 {
		t.Errorf("requests with code 500 = %v, want 3", got)
	}
	if got := h.metric("samples_dropped_total", nil); got != 0 {
		t.Errorf("samples_dropped_total = %v, want 0", got)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	for _, tc := range []struct {
		name      string
		value     func() string
		least, at time.Duration // the wait must be in (least, at]
	}{
		{"seconds", func() string { return "2" }, 2*time.Second - 1, 2 * time.Second},
		// An HTTP date has one-second resolution; 3s ahead gives a wait of
		// a little over 2s to 3s. Backoff alone would be milliseconds.
		{"HTTP date", func() string { return time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat) },
			time.Second, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := newReceiver(t, func(n int) response {
				if n == 1 {
					return response{status: http.StatusTooManyRequests, header: map[string]string{"Retry-After": tc.value()}}
				}
				return response{status: http.StatusOK}
			})
			var mu sync.Mutex
			var waits []time.Duration
			h := start(t, Config{Endpoints: []EndpointConfig{testEndpoint(rcv.url())}}, func(w *Writer) {
				// Record the wait instead of sleeping, so the test stays fast.
				w.queues[0].sleep = func(ctx context.Context, d time.Duration) error {
					mu.Lock()
					waits = append(waits, d)
					mu.Unlock()
					return nil
				}
			})
			h.w.Append(sequence(newSeries("__name__", "m"), 1, 10))
			eventually(t, 3*time.Second, "delivery after the 429", func() bool { return rcv.acceptedSamples() == 10 })
			mu.Lock()
			defer mu.Unlock()
			if len(waits) != 1 || waits[0] > tc.at || waits[0] <= tc.least {
				t.Fatalf("waits %v, want one in (%s, %s]", waits, tc.least, tc.at)
			}
			if rcv.requestCount() != 2 {
				t.Fatalf("%d requests, want 2", rcv.requestCount())
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"2":                             2 * time.Second,
		" 7 ":                           7 * time.Second,
		"0":                             0,
		"-3":                            0,
		"99999999999999999":             maxRetryAfter,
		"soon":                          0,
		"Fri, 02 Jan 2026 03:04:35 GMT": 30 * time.Second,
		"Fri, 02 Jan 2026 03:00:00 GMT": 0, // in the past
		"Sat, 03 Jan 2026 03:04:05 GMT": maxRetryAfter,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", v, got, want)
		}
	}
}

func Test4xxIsNotRetriedCountedAndLoggedOnce(t *testing.T) {
	rcv := newReceiver(t, func(int) response {
		return response{status: http.StatusBadRequest, body: "out of order sample"}
	})
	ep := testEndpoint(rcv.url())
	ep.Queue.Shards = 1
	h := start(t, Config{Endpoints: []EndpointConfig{ep}}, nil)
	s := newSeries("__name__", "m")
	for i := range 3 {
		h.w.Append(sequence(s, int64(i*10), 10))
		eventually(t, 3*time.Second, "the request", func() bool { return rcv.requestCount() == i+1 })
	}
	// Give a wrongly retried batch time to show up.
	time.Sleep(50 * time.Millisecond)
	if n := rcv.requestCount(); n != 3 {
		t.Fatalf("%d requests for 3 batches: a 400 was retried", n)
	}
	l := map[string]string{"remote_name": ep.URL}
	if got := h.metric("samples_dropped_total", map[string]string{"reason": "http_400"}); got != 30 {
		t.Errorf(`samples_dropped_total{reason="http_400"} = %v, want 30`, got)
	}
	if got := h.metric("samples_failed_total", l); got != 30 {
		t.Errorf("samples_failed_total = %v, want 30", got)
	}
	if got := h.metric("samples_retried_total", l); got != 0 {
		t.Errorf("samples_retried_total = %v, want 0", got)
	}
	if n := h.logs.count("rejected a batch"); n != 1 {
		t.Errorf("logged the rejection %d times, want once", n)
	}
}

// TestReceiverDownThenBack takes the receiver away (connection refused),
// checks that the oldest samples beyond the capacity are dropped and counted
// exactly, and that all the rest arrives in order once it is back.
func TestReceiverDownThenBack(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: connection refused

	ep := testEndpoint("http://" + addr + "/api/v1/push")
	ep.Queue = QueueConfig{Capacity: 10, Shards: 1, MaxSamplesPerSend: 10, BatchSendDeadline: time.Hour,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	h := start(t, Config{Endpoints: []EndpointConfig{ep}}, nil)
	labels := map[string]string{"remote_name": ep.URL}
	s := newSeries("__name__", "m", "job", "a")

	// A full batch: the shard takes all 10 and keeps retrying them.
	h.w.Append(sequence(s, 1, 10))
	eventually(t, 3*time.Second, "failing sends", func() bool { return h.metric("samples_retried_total", labels) >= 20 })
	// 25 more while down: the ring keeps the newest 10 (26..35), drops 15.
	h.w.Append(sequence(s, 11, 25))
	if got := h.metric("samples_dropped_total", map[string]string{"reason": "queue_full"}); got != 15 {
		t.Fatalf(`dropped{reason="queue_full"} = %v, want 15`, got)
	}
	if got := h.metric("queue_length", labels); got != 20 {
		t.Fatalf("queue_length = %v, want 20 (10 in flight + 10 buffered)", got)
	}

	rcv := newUnstartedReceiver(t, nil)
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	rcv.srv.Listener = l
	rcv.srv.Start()
	t.Cleanup(rcv.srv.Close)

	eventually(t, 3*time.Second, "delivery", func() bool { return rcv.acceptedSamples() == 20 })
	want := append(rangeTS(1, 10), rangeTS(26, 35)...)
	if got := timestamps(rcv.samplesOf(s)); !slices.Equal(got, want) {
		t.Fatalf("received %v, want %v", got, want)
	}
	// The receiver counts a batch before the sender has read the response
	// and recorded it; the highest sent timestamp is recorded last.
	eventually(t, 3*time.Second, "the sender recording the batches", func() bool {
		return h.metric("highest_sent_timestamp_seconds", labels) == 0.035
	})
	if got := h.metric("samples_sent_total", labels); got != 20 {
		t.Errorf("samples_sent_total = %v, want 20", got)
	}
	if got := h.metric("samples_in_total", labels); got != 35 {
		t.Errorf("samples_in_total = %v, want 35", got)
	}
	if got := h.metric("request_duration_seconds", map[string]string{"code": "error"}); got < 1 {
		t.Errorf("no request observed with code=error")
	}
	if got := h.metric("highest_sent_timestamp_seconds", labels); got != 0.035 {
		t.Errorf("highest_sent_timestamp_seconds = %v, want 0.035", got)
	}
}

func TestHangingReceiverIsCutOffAndRetried(t *testing.T) {
	rcv := newReceiver(t, func(n int) response {
		if n == 1 {
			return response{hang: true}
		}
		return response{status: http.StatusOK}
	})
	ep := testEndpoint(rcv.url())
	ep.Timeout = 200 * time.Millisecond
	h := start(t, Config{Endpoints: []EndpointConfig{ep}}, nil)
	s := newSeries("__name__", "m")
	begin := time.Now()
	h.w.Append(sequence(s, 1, 5))
	eventually(t, 3*time.Second, "delivery after the timeout", func() bool { return rcv.acceptedSamples() == 5 })
	if took := time.Since(begin); took < ep.Timeout {
		t.Fatalf("delivered after %s, before the %s timeout could cut the hanging request", took, ep.Timeout)
	}
	if got := h.metric("request_duration_seconds", map[string]string{"code": "error"}); got != 1 {
		t.Errorf("requests with code=error = %v, want 1", got)
	}
	if got := timestamps(rcv.samplesOf(s)); !slices.Equal(got, rangeTS(1, 5)) {
		t.Fatalf("received %v", got)
	}
}

// TestPerSeriesOrderUnderConcurrency appends many series of several
// targets from several goroutines to many shards while the receiver fails a
// fifth of the requests; every series must arrive complete and in timestamp
// order. Each appender owns its targets' interners and adds a series to one
// of them every round, so later samples carry later snapshots.
func TestPerSeriesOrderUnderConcurrency(t *testing.T) {
	var failures atomic.Int64
	rcv := newReceiver(t, func(n int) response {
		if rand.IntN(5) == 0 {
			failures.Add(1)
			return response{status: http.StatusServiceUnavailable}
		}
		return response{status: http.StatusOK}
	})
	ep := testEndpoint(rcv.url())
	ep.Queue.Shards = 8
	ep.Queue.MaxSamplesPerSend = 50
	ep.Queue.Capacity = 100_000
	h := start(t, Config{Endpoints: []EndpointConfig{ep}}, nil)

	const appenders, targetsPerAppender, seriesPerTarget, rounds = 4, 3, 20, 40
	var mu sync.Mutex
	var all []testSeries
	var firstRound []int // the round of each series' first sample
	var wg sync.WaitGroup
	for a := range appenders {
		var targets []*target
		var mine [][]testSeries
		for tgt := range targetsPerAppender {
			tg := newTarget(uint64(a*targetsPerAppender + tgt))
			targets = append(targets, tg)
			var ss []testSeries
			for i := range seriesPerTarget {
				ss = append(ss, tg.series(pairs("__name__", "m", "appender", fmt.Sprint(a), "i", fmt.Sprint(i), "t", fmt.Sprint(tgt))...))
			}
			mine = append(mine, ss)
		}
		mu.Lock()
		for _, ss := range mine {
			all = append(all, ss...)
			for range ss {
				firstRound = append(firstRound, 0)
			}
		}
		mu.Unlock()
		wg.Go(func() {
			batch := make([]model.Sample, 0, 64)
			for r := range rounds {
				// A new series on a target each round: a new snapshot.
				tgt := r % targetsPerAppender
				s := targets[tgt].series(pairs("__name__", "m", "appender", fmt.Sprint(a), "new", fmt.Sprint(r), "t", fmt.Sprint(tgt))...)
				mine[tgt] = append(mine[tgt], s)
				mu.Lock()
				all = append(all, s)
				firstRound = append(firstRound, r)
				mu.Unlock()
				for _, ss := range mine {
					batch = batch[:0]
					for _, s := range ss {
						batch = append(batch, s.at(int64(r+1), float64(r)))
					}
					h.w.Append(batch) // the slice is reused: Append must copy
				}
				if r%8 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for _, r := range firstRound {
		total += rounds - r
	}
	eventually(t, 5*time.Second, "all samples", func() bool { return rcv.acceptedSamples() == total })
	for i, s := range all {
		if got := timestamps(rcv.samplesOf(s)); !slices.Equal(got, rangeTS(int64(firstRound[i]+1), rounds)) {
			t.Fatalf("series %s received %v", seriesKey(s), got)
		}
	}
	if failures.Load() == 0 {
		t.Log("no request failed; order was not tested against retries this run")
	}
}

func TestStaleMarkerReachesReceiverBitExact(t *testing.T) {
	rcv := newReceiver(t, nil)
	h := start(t, Config{Endpoints: []EndpointConfig{testEndpoint(rcv.url())}}, nil)
	s := newSeries("__name__", "m")
	h.w.Append([]model.Sample{s.at(1, 1), s.at(2, math.Float64frombits(value.StaleNaN))})
	eventually(t, 3*time.Second, "delivery", func() bool { return rcv.acceptedSamples() == 2 })
	got := rcv.samplesOf(s)
	if bits := math.Float64bits(got[1].Value); bits != value.StaleNaN || !value.IsStaleNaN(got[1].Value) {
		t.Fatalf("stale marker arrived as %#x", bits)
	}
}

func TestRequestHeadersAndAuth(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	passwordFile := filepath.Join(dir, "password")
	if err := os.WriteFile(tokenFile, []byte("s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(passwordFile, []byte("pa55"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		set      func(*EndpointConfig)
		wantAuth string
	}{
		{"bearer", func(e *EndpointConfig) { e.BearerTokenFile = tokenFile }, "Bearer s3cr3t"},
		{"basic", func(e *EndpointConfig) { e.BasicAuth = BasicAuth{Username: "relay", PasswordFile: passwordFile} },
			"Basic cmVsYXk6cGE1NQ=="},
		{"none", func(*EndpointConfig) {}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := newReceiver(t, nil) // it checks the protocol headers itself
			ep := testEndpoint(rcv.url())
			ep.Headers = map[string]string{"X-Scope-OrgID": "team-a", "X-Extra": "1"}
			tc.set(&ep)
			h := start(t, Config{Endpoints: []EndpointConfig{ep}}, nil)
			h.w.Append(sequence(newSeries("__name__", "m"), 1, 1))
			eventually(t, 3*time.Second, "delivery", func() bool { return rcv.acceptedSamples() == 1 })
			rcv.mu.Lock()
			defer rcv.mu.Unlock()
			if got := rcv.headers.Get("X-Scope-OrgID"); got != "team-a" {
				t.Errorf("X-Scope-OrgID = %q", got)
			}
			if got := rcv.headers.Get("X-Extra"); got != "1" {
				t.Errorf("X-Extra = %q", got)
			}
			if got := rcv.headers.Get("Authorization"); got != tc.wantAuth {
				t.Errorf("Authorization = %q, want %q", got, tc.wantAuth)
			}
		})
	}
}

// TestUserHeadersCannotOverrideProtocolHeaders checks both lines of defence:
// validation rejects such headers, and the client sets the protocol headers
// last even if a header slipped through.
func TestUserHeadersCannotOverrideProtocolHeaders(t *testing.T) {
	for _, name := range []string{"content-encoding", "Content-Type", "X-Prometheus-Remote-Write-Version", "user-agent", "Authorization", "Host"} {
		ep := testEndpoint("http://localhost/push")
		ep.Headers = map[string]string{name: "x"}
		cfg := Config{Endpoints: []EndpointConfig{ep}}
		if err := cfg.Validate(); err == nil {
			t.Errorf("header %q accepted", name)
		}
	}
	rcv := newReceiver(t, nil) // fails the test on a wrong protocol header
	ep := testEndpoint(rcv.url())
	h := start(t, Config{Endpoints: []EndpointConfig{ep}}, func(w *Writer) {
		w.queues[0].client.headers.Set("Content-Type", "text/plain")
		w.queues[0].client.headers.Set("User-Agent", "evil")
	})
	h.w.Append(sequence(newSeries("__name__", "m"), 1, 1))
	eventually(t, 3*time.Second, "delivery", func() bool { return rcv.acceptedSamples() == 1 })
}

func TestShutdownFlushesWithinTimeout(t *testing.T) {
	rcv := newReceiver(t, nil)
	ep := testEndpoint(rcv.url())
	// Nothing would be sent for an hour but for the shutdown.
	ep.Queue.BatchSendDeadline = time.Hour
	ep.Queue.MaxSamplesPerSend = 1000
	ep.Queue.Shards = 4
	h := start(t, Config{Endpoints: []EndpointConfig{ep}, ShutdownTimeout: 2 * time.Second}, nil)
	var ss []testSeries
	for i := range 100 {
		s := newSeries("__name__", "m", "i", fmt.Sprint(i))
		ss = append(ss, s)
		h.w.Append(sequence(s, 1, 3))
	}
	time.Sleep(20 * time.Millisecond)
	if n := rcv.requestCount(); n != 0 {
		t.Fatalf("%d requests before shutdown", n)
	}
	took, err := h.stop()
	if err != nil {
		t.Fatal(err)
	}
	if took > 2*time.Second {
		t.Fatalf("Run took %s to return", took)
	}
	if got := rcv.acceptedSamples(); got != 300 {
		t.Fatalf("flushed %d of 300 samples", got)
	}
	// After Run, Append drops and counts.
	h.w.Append(sequence(ss[0], 10, 5))
	if got := h.metric("samples_dropped_total", map[string]string{"reason": "shutdown"}); got != 5 {
		t.Fatalf(`dropped{reason="shutdown"} = %v, want 5`, got)
	}
}

func TestShutdownTimeoutGivesUp(t *testing.T) {
	rcv := newReceiver(t, func(n int) response {
		if n == 1 {
			return response{hang: true}
		}
		return response{status: http.StatusServiceUnavailable}
	})
	ep := testEndpoint(rcv.url())
	ep.Timeout = 10 * time.Second // longer than the shutdown timeout
	ep.Queue.Shards = 1
	ep.Queue.MaxSamplesPerSend = 10
	h := start(t, Config{Endpoints: []EndpointConfig{ep}, ShutdownTimeout: 300 * time.Millisecond}, nil)
	h.w.Append(sequence(newSeries("__name__", "m"), 1, 25))
	eventually(t, 3*time.Second, "the hanging request", func() bool { return rcv.requestCount() == 1 })
	took, err := h.stop()
	if err == nil {
		t.Fatal("Run returned nil although samples were lost")
	}
	if took < 300*time.Millisecond || took > 2*time.Second {
		t.Fatalf("Run returned after %s, want just after the 300ms shutdown timeout", took)
	}
	if got := h.metric("samples_dropped_total", map[string]string{"reason": "shutdown"}); got != 25 {
		t.Fatalf(`dropped{reason="shutdown"} = %v, want 25`, got)
	}
	if got := h.metric("queue_length", nil); got != 0 {
		t.Fatalf("queue_length = %v after shutdown", got)
	}
}

func TestBrokenEndpointDoesNotHoldUpAnother(t *testing.T) {
	broken := newReceiver(t, func(n int) response {
		if n%2 == 1 {
			return response{hang: true}
		}
		return response{status: http.StatusInternalServerError}
	})
	good := newReceiver(t, nil)
	bad := testEndpoint(broken.url())
	bad.Name = "broken"
	bad.Timeout = time.Second
	bad.Queue.Capacity = 100
	ok := testEndpoint(good.url())
	ok.Name = "good"
	h := start(t, Config{Endpoints: []EndpointConfig{bad, ok}, ShutdownTimeout: 100 * time.Millisecond}, nil)

	var ss []testSeries
	for i := range 20 {
		ss = append(ss, newSeries("__name__", "m", "i", fmt.Sprint(i)))
	}
	begin := time.Now()
	for r := range 100 {
		batch := make([]model.Sample, 0, len(ss))
		for _, s := range ss {
			batch = append(batch, s.at(int64(r+1), 1))
		}
		h.w.Append(batch)
	}
	if took := time.Since(begin); took > time.Second {
		t.Fatalf("Append took %s with a hanging endpoint", took)
	}
	eventually(t, 3*time.Second, "the good endpoint to get everything", func() bool { return good.acceptedSamples() == 2000 })
	for _, s := range ss {
		if got := timestamps(good.samplesOf(s)); !slices.Equal(got, rangeTS(1, 100)) {
			t.Fatalf("good endpoint got %v for %s", got, seriesKey(s))
		}
	}
	if broken.acceptedSamples() != 0 {
		t.Fatal("broken endpoint accepted samples")
	}
	if got := h.metric("samples_dropped_total", map[string]string{"remote_name": "broken", "reason": "queue_full"}); got == 0 {
		t.Error("broken endpoint's full queue dropped nothing")
	}
	if got := h.metric("samples_dropped_total", map[string]string{"remote_name": "good"}); got != 0 {
		t.Errorf("good endpoint dropped %v samples", got)
	}
}

func TestMetricsAreRegisteredPerEndpoint(t *testing.T) {
	rcv := newReceiver(t, nil)
	ep := testEndpoint(rcv.url())
	ep.Name = "mimir"
	h := start(t, Config{Endpoints: []EndpointConfig{ep}}, nil)
	h.w.Append(sequence(newSeries("__name__", "m"), 1000, 10))
	eventually(t, 3*time.Second, "delivery", func() bool { return rcv.acceptedSamples() == 10 })
	l := map[string]string{"remote_name": "mimir", "url": rcv.url()}
	// The receiver counts a batch before the sender has read the response
	// and recorded it; the highest sent timestamp is recorded last.
	eventually(t, 3*time.Second, "the sender recording the batch", func() bool {
		return h.metric("highest_sent_timestamp_seconds", l) == 1.009
	})
	for name, want := range map[string]float64{
		"samples_in_total":               10,
		"samples_sent_total":             10,
		"queue_length":                   0,
		"queue_capacity":                 10_000,
		"shards":                         2,
		"highest_sent_timestamp_seconds": 1.009,
		"request_duration_seconds":       1,
	} {
		if got := h.metric(name, l); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := h.metric("bytes_sent_total", l); got <= 0 {
		t.Errorf("bytes_sent_total = %v", got)
	}
	// A second Writer on the same registry is refused, not a panic.
	if _, err := New(Config{Endpoints: []EndpointConfig{ep}}, h.w.logger, h.reg); err == nil {
		t.Error("registering a second Writer's metrics succeeded")
	}
}

func TestRunTwiceFails(t *testing.T) {
	h := start(t, Config{Endpoints: []EndpointConfig{testEndpoint("http://127.0.0.1:1/push")}}, nil)
	time.Sleep(5 * time.Millisecond)
	if err := h.w.Run(context.Background()); err == nil {
		t.Fatal("second Run succeeded")
	}
}

func TestInvalidSeriesDroppedNotBatch(t *testing.T) {
	rcv := newReceiver(t, nil)
	h := start(t, Config{Endpoints: []EndpointConfig{testEndpoint(rcv.url())}}, nil)
	good := newSeries("__name__", "m")
	bad := newSeries("job", "x", "__name__", "m") // unsorted
	h.w.Append([]model.Sample{good.at(1, 0), bad.at(1, 0), good.at(2, 0)})
	eventually(t, 3*time.Second, "delivery", func() bool { return rcv.acceptedSamples() == 2 })
	eventually(t, time.Second, "drop count", func() bool {
		return h.metric("samples_dropped_total", map[string]string{"reason": "invalid_series"}) == 1
	})
}
