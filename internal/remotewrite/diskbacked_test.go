package remotewrite

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

	"github.com/prometheus/client_golang/prometheus"
)

// TestCapacityIsTheEndpoints: one target (always one shard) may fill the
// whole endpoint's capacity, not a 1/Shards share of it (issue 11); past
// the capacity the fullest shard's oldest samples go, and every series
// keeps its order.
func TestCapacityIsTheEndpoints(t *testing.T) {
	ep := testEndpoint("http://127.0.0.1:1/push")
	ep.Queue.Shards, ep.Queue.Capacity, ep.Queue.MaxSamplesPerSend = 4, 1000, 1000
	reg := prometheus.NewRegistry()
	w, err := New(Config{Endpoints: []EndpointConfig{ep}}, testLogger(), reg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, reg: reg}
	q := w.queues[0]
	a, b := newTarget(4*10+1), newTarget(4*10+2) // shards 1 and 2
	sa := a.series(pairs("__name__", "m")...)
	sb := b.series(pairs("__name__", "m")...)

	w.Append(sequence(sa, 1, 1000))
	if got := h.metric("samples_dropped_total", map[string]string{"reason": "queue_full"}); got != 0 {
		t.Fatalf("one target filling the endpoint's capacity dropped %v samples (capacity split per shard?)", got)
	}
	if got := q.length(); got != 1000 {
		t.Fatalf("queue holds %d, want 1000", got)
	}
	// 300 more on another shard: the endpoint is over by 300, taken from the
	// fullest shard (a's oldest).
	w.Append(sequence(sb, 1, 300))
	if got := h.metric("samples_dropped_total", map[string]string{"reason": "queue_full"}); got != 300 {
		t.Fatalf("dropped %v, want 300", got)
	}
	for k, want := range map[int][]int64{1: rangeTS(301, 1000), 2: rangeTS(1, 300)} {
		sh := q.shards[k]
		got := make([]model.Sample, sh.ring.n)
		sh.ring.pop(got)
		var ts []int64
		for _, x := range got {
			ts = append(ts, x.T)
		}
		if !slices.Equal(ts, want) {
			t.Fatalf("shard %d holds %d samples %v..., want %d from %d", k, len(ts), ts[:min(3, len(ts))], len(want), want[0])
		}
	}
	if got := q.capacity(); got != 1000 {
		t.Fatalf("capacity %d, want 1000", got)
	}
}

// flakyReceiver is a receiver that answers 503 while down is set.
func flakyReceiver(t *testing.T) (*receiver, *atomic.Bool) {
	var down atomic.Bool
	r := newReceiver(t, func(int) response {
		if down.Load() {
			return response{status: 503}
		}
		return response{status: 204}
	})
	return r, &down
}

// diskEndpoint is testEndpoint with a disk queue in dir.
func diskEndpoint(url, dir string) EndpointConfig {
	ep := testEndpoint(url)
	ep.Name = "disk"
	ep.Queue.Shards = 3
	ep.Queue.Dir = dir
	ep.Queue.MaxBytes = 64 << 20
	ep.Queue.SyncInterval = 10 * time.Millisecond
	return ep
}

// workload is a few targets (so several shards) with a few series each.
type workload struct{ series []testSeries }

func newWorkload(targets, perTarget int) *workload {
	w := &workload{}
	for tg := range targets {
		in := newTarget(uint64(7 + tg))
		for i := range perTarget {
			w.series = append(w.series, in.series(pairs("__name__", "m", "i", fmt.Sprint(i), "t", fmt.Sprint(tg))...))
		}
	}
	return w
}

// round returns one sample of every series at timestamp ts.
func (wl *workload) round(ts int64) []model.Sample {
	out := make([]model.Sample, len(wl.series))
	for i, s := range wl.series {
		out[i] = s.at(ts, float64(ts))
	}
	return out
}

// checkComplete fails unless the receiver holds every series' samples for
// timestamps 1..rounds exactly once each, in order (a strict receiver
// rejects out-of-order samples).
func (wl *workload) checkComplete(t *testing.T, r *receiver, rounds int) {
	t.Helper()
	for _, s := range wl.series {
		if got := timestamps(r.samplesOf(s)); !slices.Equal(got, rangeTS(1, int64(rounds))) {
			t.Fatalf("series %s: received %d samples %v, want 1..%d in order", seriesKey(s), len(got), got[:min(len(got), 10)], rounds)
		}
	}
}

// diskMetric returns the disk queue's metric name{reason} (reason "" for
// unlabelled ones).
func diskMetric(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "kubelet_meta_proxy_disk_queue_"+name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if reason != "" && !hasLabels(m, map[string]string{"reason": reason}) {
				continue
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

// TestDiskQueueOutageRestartInOrder: with the receiver failing, samples go
// to disk; a graceful stop loses nothing (Run returns nil) and leaves them
// there; a new Writer on the same directory sends the backlog first, then
// newer samples, every series complete and in order.
func TestDiskQueueOutageRestartInOrder(t *testing.T) {
	dir := t.TempDir()
	rcv, down := flakyReceiver(t)
	down.Store(true)
	wl := newWorkload(6, 20)
	ep := diskEndpoint(rcv.url(), dir)

	h := start(t, Config{Endpoints: []EndpointConfig{ep}, ShutdownTimeout: 2 * time.Second}, nil)
	for ts := int64(1); ts <= 50; ts++ {
		h.w.Append(wl.round(ts))
	}
	eventually(t, 5*time.Second, "records on disk", func() bool { return diskMetric(t, h.reg, "samples", "") > 0 })
	elapsed, err := h.stop()
	if err != nil {
		t.Fatalf("graceful stop with the receiver down: %v (nothing should be dropped: it is on disk)", err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("stop took %s; with the receiver failing it should not wait out the timeout", elapsed)
	}
	if got := h.metric("samples_dropped_total", nil); got != 0 {
		t.Fatalf("dropped %v samples", got)
	}
	if got := rcv.acceptedSamples(); got != 0 {
		t.Fatalf("receiver accepted %d while down", got)
	}

	down.Store(false)
	h2 := start(t, Config{Endpoints: []EndpointConfig{ep}}, nil)
	for ts := int64(51); ts <= 80; ts++ {
		h2.w.Append(wl.round(ts))
	}
	total := 80 * len(wl.series)
	eventually(t, 10*time.Second, "every sample delivered", func() bool { return rcv.acceptedSamples() >= total })
	if _, err := h2.stop(); err != nil {
		t.Fatal(err)
	}
	wl.checkComplete(t, rcv, 80)
	if got := rcv.acceptedSamples(); got != total {
		t.Fatalf("receiver accepted %d samples, want %d (duplicates?)", got, total)
	}
	if got := h2.metric("samples_sent_total", nil); got != float64(50*len(wl.series)+30*len(wl.series)) {
		t.Fatalf("samples_sent_total %v after restart, want %d (the backlog and the new samples)", got, total)
	}
	if got := diskMetric(t, h2.reg, "samples", ""); got != 0 {
		t.Fatalf("%v samples left on disk", got)
	}
}

// TestDiskQueueUnopenableFallsBackToMemory: a queue dir that cannot be
// created leaves the endpoint on the memory queue, logged and counted, and
// samples still arrive.
func TestDiskQueueUnopenableFallsBackToMemory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rcv, _ := flakyReceiver(t)
	ep := diskEndpoint(rcv.url(), filepath.Join(file, "q")) // under a regular file
	h := start(t, Config{Endpoints: []EndpointConfig{ep}}, nil)
	wl := newWorkload(3, 5)
	for ts := int64(1); ts <= 20; ts++ {
		h.w.Append(wl.round(ts))
	}
	eventually(t, 5*time.Second, "delivery from memory", func() bool { return rcv.acceptedSamples() == 20*len(wl.series) })
	wl.checkComplete(t, rcv, 20)
	if got := h.metric("disk_fallback_samples_total", map[string]string{"reason": "open_failed"}); got != float64(20*len(wl.series)) {
		t.Fatalf("disk_fallback_samples_total{reason=open_failed} = %v, want %d", got, 20*len(wl.series))
	}
	if h.logs.count("disk queue cannot be opened") != 1 {
		t.Fatal("no log line about the disk queue")
	}
}

// TestDiskFullHoldsThenDelivers fills a 1 MiB tmpfs while the receiver is
// down: appends fail (ENOSPC, logged and counted), the refused batches wait
// in memory rather than overtake the disk backlog, and once the receiver is
// back everything arrives, every series complete and in order.
func TestDiskFullHoldsThenDelivers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	defer func(d time.Duration) { diskRetryWait = d }(diskRetryWait)
	diskRetryWait = 10 * time.Millisecond

	rcv, down := flakyReceiver(t)
	down.Store(true)
	ep := diskEndpoint(rcv.url(), mnt)
	ep.Queue.MaxBytes = 16 << 20 // more than the tmpfs holds
	ep.Queue.Capacity = 1_000_000
	h := start(t, Config{Endpoints: []EndpointConfig{ep}, ShutdownTimeout: 2 * time.Second}, nil)
	wl := newWorkload(6, 50)
	rounds := 0
	for rounds < 400 && diskMetric(t, h.reg, "append_errors_total", "enospc") == 0 {
		rounds++
		h.w.Append(wl.round(int64(rounds)))
		time.Sleep(time.Millisecond)
	}
	if diskMetric(t, h.reg, "append_errors_total", "enospc") == 0 {
		t.Fatalf("1 MiB tmpfs never full after %d rounds", rounds)
	}
	// A few more rounds with the disk full: held in memory.
	for range 20 {
		rounds++
		h.w.Append(wl.round(int64(rounds)))
	}
	eventually(t, 5*time.Second, "the log line", func() bool { return h.logs.count("disk queue refused a request") > 0 })
	if got := rcv.acceptedSamples(); got != 0 {
		t.Fatalf("receiver down, yet %d samples accepted", got)
	}
	down.Store(false)
	total := rounds * len(wl.series)
	eventually(t, 30*time.Second, "every sample delivered", func() bool { return rcv.acceptedSamples() >= total })
	if got := h.metric("samples_dropped_total", nil); got != 0 {
		t.Fatalf("dropped %v", got)
	}
	wl.checkComplete(t, rcv, rounds)
}

// TestDiskQueueLockedIsAnError: two Writers on one directory is a
// configuration mistake, not a disk failure.
func TestDiskQueueLockedIsAnError(t *testing.T) {
	dir := t.TempDir()
	ep := diskEndpoint("http://127.0.0.1:1/push", dir)
	w1, err := New(Config{Endpoints: []EndpointConfig{ep}}, testLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w1.closeDisks()
	if _, err := New(Config{Endpoints: []EndpointConfig{ep}}, testLogger(), nil); err == nil {
		t.Fatal("a second Writer on the same queue dir started")
	}
}

func TestQueueSubdir(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"mimir-a", "mimir-a"},
		{"..", "..-"},
		{"http://mimir:8080/api/v1/push", "http___mimir_8080_api_v1_push-"},
	} {
		got := QueueSubdir(c.name)
		if got != c.want && (len(got) != len(c.want)+8 || got[:len(c.want)] != c.want) {
			t.Errorf("QueueSubdir(%q) = %q, want %q[hash]", c.name, got, c.want)
		}
	}
	if QueueSubdir("a/b") == QueueSubdir("a_b") {
		t.Error("distinct names share a directory")
	}
}

// BenchmarkDiskBackedSend measures the disk path end to end: Append, encode,
// append to disk, read back, POST to a local receiver, acknowledge.
func BenchmarkDiskBackedSend(b *testing.B) {
	for _, disk := range []bool{false, true} {
		b.Run(fmt.Sprintf("disk=%v", disk), func(b *testing.B) {
			rcv := newReceiver(b, nil)
			ep := testEndpoint(rcv.url())
			ep.Queue.MaxSamplesPerSend, ep.Queue.Capacity, ep.Queue.Shards = 2000, 100_000, 2
			if disk {
				ep.Queue.Dir, ep.Queue.MaxBytes = b.TempDir(), 256<<20
			}
			w, err := New(Config{Endpoints: []EndpointConfig{ep}, ShutdownTimeout: 10 * time.Second}, slog.New(slog.DiscardHandler), nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			wl := newWorkload(4, 500)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w.Append(wl.round(int64(i + 1)))
				for w.queues[0].length() > 50_000 {
					time.Sleep(time.Millisecond)
				}
			}
			want := b.N * len(wl.series)
			for rcv.acceptedSamples() < want {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(want)/b.Elapsed().Seconds(), "samples/s")
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// TestDiskStopKeepsFinishedRecords is the regression test of the re-sent
// records (issue 12). With the receiver failing one shard's requests, a
// graceful stop used to (1) abandon the other shard's request under way,
// which the receiver accepted all the same, and (2) forget that a record
// was delivered when an earlier one (the failing shard's) was not: either
// way the next Writer sent it again, older samples after newer ones, which
// a receiver rejects as out of order. Now the stop waits for the answer,
// and the queue's checkpoint keeps the record finished out of order.
func TestDiskStopKeepsFinishedRecords(t *testing.T) {
	var failing, slow atomic.Bool
	var slowEntered, failRequests atomic.Int32
	var mu sync.Mutex
	got := map[string][]int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		wr, err := decodeRequest(body)
		if err != nil || len(wr.Timeseries) == 0 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		key := labelsKey(wr.Timeseries[0].Labels)
		switch {
		case failing.Load() && strings.Contains(key, "t=fail"):
			failRequests.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		case slow.Load() && strings.Contains(key, "t=slow"):
			slowEntered.Add(1)
			time.Sleep(300 * time.Millisecond) // still processing when the stop comes
		}
		mu.Lock()
		for _, ts := range wr.Timeseries {
			k := labelsKey(ts.Labels)
			for _, s := range ts.Samples {
				got[k] = append(got[k], s.Timestamp)
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	failing.Store(true)
	slow.Store(true)

	ep := diskEndpoint(srv.URL+"/api/v1/push", t.TempDir())
	// Keys 9 and 10: shards (and lanes) 0 and 1 of 3.
	fail := newTarget(9).series(pairs("__name__", "m", "t", "fail")...)
	slowS := newTarget(10).series(pairs("__name__", "m", "t", "slow")...)
	h := start(t, Config{Endpoints: []EndpointConfig{ep}, ShutdownTimeout: 5 * time.Second}, nil)
	// The failing shard's record first, so that the slow one is finished
	// beyond an unfinished one.
	h.w.Append(sequence(fail, 1, 3))
	eventually(t, 5*time.Second, "the failing shard retrying", func() bool { return failRequests.Load() > 1 })
	h.w.Append(sequence(slowS, 1, 3))
	eventually(t, 5*time.Second, "the slow request under way", func() bool { return slowEntered.Load() > 0 })
	if _, err := h.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	time.Sleep(400 * time.Millisecond) // an abandoned request would land now

	failing.Store(false)
	slow.Store(false)
	h2 := start(t, Config{Endpoints: []EndpointConfig{ep}}, nil)
	h2.w.Append(sequence(fail, 4, 2))
	h2.w.Append(sequence(slowS, 4, 2))
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got[seriesKey(fail)]) + len(got[seriesKey(slowS)])
	}
	eventually(t, 5*time.Second, "both series delivered", func() bool { return count() >= 10 })
	if _, err := h2.stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range []testSeries{fail, slowS} {
		if ts := got[seriesKey(s)]; !slices.Equal(ts, rangeTS(1, 5)) {
			t.Errorf("series %s received %v, want 1..5 once each, in order", seriesKey(s), ts)
		}
	}
}

// TestDiskDirectModeSwitch: with the receiver up every request goes to its
// sender straight from the shard's encoder (direct_records_total equals the
// records appended: none read back from disk); once a send fails, requests
// go to disk only and are read back in order (backlog mode); a graceful
// stop leaves the backlog on disk, and after the restart it is read back
// before anything newer, direct mode coming back only once it is all read.
// Every series arrives complete, in order, and exactly once: nothing sent
// directly is sent again after the restart.
func TestDiskDirectModeSwitch(t *testing.T) {
	rcv, down := flakyReceiver(t)
	wl := newWorkload(6, 20)
	ep := diskEndpoint(rcv.url(), t.TempDir())
	cfg := Config{Endpoints: []EndpointConfig{ep}, ShutdownTimeout: 2 * time.Second}
	perRound := len(wl.series)
	ts := int64(0)
	rounds := func(h *harness, n int) {
		for range n {
			ts++
			h.w.Append(wl.round(ts))
			time.Sleep(time.Millisecond)
		}
	}
	delivered := func() bool { return rcv.acceptedSamples() >= int(ts)*perRound }
	m := func(h *harness, name string) float64 { return diskMetric(t, h.reg, name, "") }

	h := start(t, cfg, nil)
	// Direct: the receiver keeps up.
	rounds(h, 30)
	eventually(t, 5*time.Second, "delivery", delivered)
	if a, d := m(h, "appended_records_total"), m(h, "direct_records_total"); d == 0 || d != a {
		t.Fatalf("receiver up: %v of %v records handed over directly, want all (none read back)", d, a)
	}
	if got := m(h, "read_records_total"); got != m(h, "appended_records_total") {
		t.Fatalf("read_records_total %v, want every record appended", got)
	}

	// Backlog: the receiver fails; what comes after the first failure goes
	// to disk only.
	down.Store(true)
	rounds(h, 5)
	eventually(t, 5*time.Second, "a sender retrying", func() bool { return h.metric("samples_retried_total", nil) > 0 })
	before := m(h, "appended_records_total")
	rounds(h, 40)
	eventually(t, 5*time.Second, "the rounds on disk", func() bool { return m(h, "appended_records_total") > before })
	if _, err := h.stop(); err != nil {
		t.Fatalf("graceful stop with the receiver down: %v", err)
	}
	if got := m(h, "direct_records_total"); got > before {
		t.Fatalf("%v records handed over directly, but only %v were appended before a sender was retrying", got, before)
	}
	backlog := m(h, "records")
	if backlog == 0 {
		t.Fatal("nothing left on disk with the receiver down")
	}
	sentBefore := rcv.acceptedSamples()

	// Restart with the receiver back: new rounds come in at once, while
	// the backlog is read back; they must not overtake it.
	down.Store(false)
	h2 := start(t, cfg, nil)
	rounds(h2, 20)
	eventually(t, 10*time.Second, "backlog and new rounds delivered", delivered)
	if got := m(h2, "read_records_total") - m(h2, "direct_records_total"); got < backlog {
		t.Fatalf("after the restart %v records read back from disk, want at least the %v left there", got, backlog)
	}
	// Caught up: direct again.
	direct := m(h2, "direct_records_total")
	appended := m(h2, "appended_records_total")
	rounds(h2, 20)
	eventually(t, 5*time.Second, "delivery", delivered)
	if d, a := m(h2, "direct_records_total")-direct, m(h2, "appended_records_total")-appended; d == 0 || d != a {
		t.Fatalf("backlog drained, receiver up: %v of %v new records handed over directly, want all", d, a)
	}
	if _, err := h2.stop(); err != nil {
		t.Fatal(err)
	}
	wl.checkComplete(t, rcv, int(ts))
	if got, want := rcv.acceptedSamples(), int(ts)*perRound; got != want {
		t.Fatalf("receiver accepted %d samples, want %d (%d before the restart): some sent twice", got, want, sentBefore)
	}
	if got := m(h2, "records"); got != 0 {
		t.Fatalf("%v records left on disk", got)
	}
}
