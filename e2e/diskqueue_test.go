package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// Durable remote write (issue 12) against the bed's real Prometheus: every
// test runs the relay with --remote-write-queue-dir and takes Prometheus
// down, then counts samples: what the relay scraped against what
// Prometheus holds. Prometheus answers 400 to an out-of-order sample, which
// the relay would count as dropped (http_400): the tests require no drop.

// outage is how long Prometheus stays down (E2E_DISKQUEUE_DOWN to change).
func outage() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("E2E_DISKQUEUE_DOWN")); err == nil {
		return d
	}
	return 60 * time.Second
}

// selfMetric sums the relay's self-metric name over the series whose labels
// include want.
func selfMetric(t *testing.T, r *bed.Relay, name string, want map[string]string) float64 {
	t.Helper()
	code, body, err := r.Get(t.Context(), "/metrics/self")
	if err != nil || code != 200 {
		t.Fatalf("/metrics/self: %d %v", code, err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics/self: %v", err)
	}
	sum := 0.0
	f := fams[name]
	if f == nil {
		return 0
	}
next:
	for _, m := range f.Metric {
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				found = found || l.GetName() == k && l.GetValue() == v
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		}
	}
	return sum
}

// waitSelf polls a self-metric until cond holds.
func waitSelf(t *testing.T, r *bed.Relay, name string, want map[string]string, timeout time.Duration, cond func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := selfMetric(t, r, name, want)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v after %s", name, want, v, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// stoppedTotals parses the relay's last "remote write endpoint stopped" log
// line.
type totals struct{ in, sent, dropped, backlog int64 }

func stoppedTotals(t *testing.T, r *bed.Relay) totals {
	t.Helper()
	b, err := os.ReadFile(r.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	var line []byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if bytes.Contains(l, []byte("remote write endpoint stopped")) {
			line = l
		}
	}
	if line == nil {
		t.Fatalf("no totals line in the relay log:\n%s", r.Logs(30))
	}
	n := func(key string) int64 {
		m := regexp.MustCompile(key + `"?[=:](\d+)`).FindSubmatch(line)
		if m == nil {
			t.Fatalf("no %s in %s", key, line)
		}
		v, _ := strconv.ParseInt(string(m[1]), 10, 64)
		return v
	}
	return totals{n("samples_in"), n("samples_sent"), n("samples_dropped"), n("disk_backlog_samples")}
}

// promCount is how many samples of the relay's series Prometheus holds with
// a timestamp at or before at. count_over_time drops the metric name, so
// several names in one query would collide: one query per name.
func promCount(t *testing.T, b *bed.Bed, sel string, at time.Time) int64 {
	t.Helper()
	u := b.PrometheusURL + "/api/v1/label/__name__/values?" + url.Values{"match[]": {"{" + sel + "}"}}.Encode()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var names struct{ Data []string }
	err = json.NewDecoder(resp.Body).Decode(&names)
	resp.Body.Close()
	if err != nil || len(names.Data) == 0 {
		t.Fatalf("metric names of {%s}: %v %v", sel, names.Data, err)
	}
	var total int64
	for _, n := range names.Data {
		res, err := b.QueryRange(t.Context(), fmt.Sprintf(`sum(count_over_time({%s, __name__=%q}[1h]))`, sel, n), at, at, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) > 0 && len(res[0].Points) > 0 {
			total += int64(res[0].Points[len(res[0].Points)-1].V)
		}
	}
	return total
}

func promDown(t *testing.T, b *bed.Bed) {
	b.StopPrometheus()
	t.Cleanup(func() { _ = b.StartPrometheus(context.Background()) })
}

func diskArgs(dir string, more ...string) []string {
	return append([]string{"--remote-write-queue-dir", dir, "--remote-write-fsync-interval", "1s", "--shutdown-timeout", "10s"}, more...)
}

// drain waits until the relay's disk queue is empty and returns how long
// it took.
func drain(t *testing.T, r *bed.Relay, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	waitSelf(t, r, "kubelet_meta_proxy_disk_queue_samples", nil, timeout, func(v float64) bool { return v == 0 })
	return time.Since(start)
}

// Prometheus down while the relay scrapes, then back: the backlog drains
// while new samples keep coming, and Prometheus ends up with exactly the
// samples the relay scraped, none rejected.
func TestDiskQueueReceiverOutage(t *testing.T) {
	b, r, sel := startRelay(t, diskArgs(t.TempDir())...)
	waitQ(t, b, fmt.Sprintf(`up{%s}`, sel), settle, bed.NonEmpty)
	promDown(t, b)
	time.Sleep(outage())
	backlog := selfMetric(t, r, "kubelet_meta_proxy_disk_queue_samples", nil)
	bytesOnDisk := selfMetric(t, r, "kubelet_meta_proxy_disk_queue_bytes", nil)
	if backlog == 0 {
		t.Fatal("nothing on disk after the outage")
	}
	in0 := selfMetric(t, r, "kubelet_meta_proxy_remote_write_samples_in_total", nil)
	if err := b.StartPrometheus(t.Context()); err != nil {
		t.Fatal(err)
	}
	took := drain(t, r, 3*time.Minute)
	in1 := selfMetric(t, r, "kubelet_meta_proxy_remote_write_samples_in_total", nil)
	t.Logf("outage %s: backlog %.0f samples, %.0f bytes on disk (%.1f B/sample); drained in %s while %.0f new samples arrived: %.0f samples/s",
		outage(), backlog, bytesOnDisk, bytesOnDisk/backlog, took.Round(time.Millisecond), in1-in0, (backlog+in1-in0)/took.Seconds())

	r.Stop()
	if err := r.ExitErr(); err != nil {
		t.Fatalf("relay exit: %v\n%s", err, r.Logs(20))
	}
	tot := stoppedTotals(t, r)
	if tot.dropped != 0 || tot.backlog != 0 || tot.sent != tot.in {
		t.Fatalf("relay totals %+v: want every sample sent, none dropped", tot)
	}
	got := promCount(t, b, sel, time.Now())
	t.Logf("relay scraped %d samples, sent %d; Prometheus holds %d", tot.in, tot.sent, got)
	if got != tot.sent {
		t.Fatalf("Prometheus holds %d samples of the relay's, the relay sent %d", got, tot.sent)
	}
}

// SIGKILL while Prometheus is down, restart on the same directory: all that
// was scraped before the kill arrives but what was still in memory (at most
// --batch-send-deadline of scrapes, 500ms here, plus the scrape in flight).
func TestDiskQueueSIGKILL(t *testing.T) {
	dir := t.TempDir()
	b := needBed(t)
	promDown(t, b)
	_, r, sel := startRelay(t, diskArgs(dir)...)
	waitSelf(t, r, "kubelet_meta_proxy_disk_queue_samples", nil, settle, func(v float64) bool { return v > 0 })
	time.Sleep(outage() / 2)
	in0 := selfMetric(t, r, "kubelet_meta_proxy_remote_write_samples_in_total", nil)
	time.Sleep(interval)
	in := selfMetric(t, r, "kubelet_meta_proxy_remote_write_samples_in_total", nil)
	mem := selfMetric(t, r, "kubelet_meta_proxy_remote_write_queue_length", nil)
	r.Kill()
	perScrape := in - in0

	if err := b.StartPrometheus(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, r2, _ := startRelay(t, diskArgs(dir)...)
	drain(t, r2, 3*time.Minute)
	// Stopped with Prometheus up, the second relay sends all it scraped; the
	// kubelets' explicit timestamps overlap the two runs, so count it all.
	r2.Stop()
	tot2 := stoppedTotals(t, r2)
	if tot2.dropped != 0 || tot2.backlog != 0 {
		t.Fatalf("restarted relay: %+v", tot2)
	}
	got := promCount(t, b, sel, time.Now())
	lost := in + float64(tot2.in) - float64(got)
	t.Logf("before the kill: %.0f samples scraped, %.0f in memory; after the restart %d more; Prometheus holds %d (lost %.0f, bound %.0f = in memory + one scrape); the restart sent %d (backlog included)",
		in, mem, tot2.in, got, lost, mem+perScrape, tot2.sent)
	if lost > mem+perScrape {
		t.Fatalf("lost %.0f samples, more than the %.0f in memory plus one scrape (%.0f)", lost, mem, perScrape)
	}
}

// SIGTERM with Prometheus down: the relay writes what it holds to disk,
// exits 0 (nothing dropped), and after a restart everything arrives.
func TestDiskQueueSIGTERMWhileDown(t *testing.T) {
	dir := t.TempDir()
	b := needBed(t)
	promDown(t, b)
	_, r, sel := startRelay(t, diskArgs(dir)...)
	waitSelf(t, r, "kubelet_meta_proxy_disk_queue_samples", nil, settle, func(v float64) bool { return v > 0 })
	time.Sleep(outage() / 3)
	begin := time.Now()
	r.Stop()
	stopped := time.Now()
	if err := r.ExitErr(); err != nil {
		t.Fatalf("relay exit with the receiver down: %v (nothing should be dropped)\n%s", err, r.Logs(20))
	}
	tot := stoppedTotals(t, r)
	t.Logf("stopped in %s: %+v", stopped.Sub(begin).Round(time.Millisecond), tot)
	if tot.dropped != 0 || tot.backlog != tot.in {
		t.Fatalf("totals %+v: want everything on disk, nothing dropped", tot)
	}
	if err := b.StartPrometheus(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, r2, _ := startRelay(t, diskArgs(dir)...)
	drain(t, r2, 3*time.Minute)
	r2.Stop()
	tot2 := stoppedTotals(t, r2)
	got := promCount(t, b, sel, time.Now())
	t.Logf("restart: %+v; Prometheus holds %d", tot2, got)
	if tot2.dropped != 0 || tot2.sent != tot.in+tot2.in || got != tot.in+tot2.in {
		t.Fatalf("scraped %d before the stop and %d after; the restart sent %d, Prometheus holds %d: want all", tot.in, tot2.in, tot2.sent, got)
	}
}

// A corrupted segment is skipped (log line, counter); the rest arrives and
// the relay keeps working.
func TestDiskQueueCorruptSegment(t *testing.T) {
	dir := t.TempDir()
	b := needBed(t)
	promDown(t, b)
	_, r, _ := startRelay(t, diskArgs(dir)...)
	waitSelf(t, r, "kubelet_meta_proxy_disk_queue_records", nil, settle, func(v float64) bool { return v >= 4 })
	r.Stop()
	segs, _ := filepath.Glob(filepath.Join(dir, "*", "*.seg"))
	var biggest string
	var size int64
	for _, s := range segs {
		if fi, err := os.Stat(s); err == nil && fi.Size() > size {
			biggest, size = s, fi.Size()
		}
	}
	if biggest == "" {
		t.Fatalf("no segment in %s: %v", dir, segs)
	}
	f, err := os.OpenFile(biggest, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, 64), size/2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Logf("corrupted 64 bytes at %d of %s (%d bytes)", size/2, biggest, size)

	if err := b.StartPrometheus(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, r2, sel := startRelay(t, diskArgs(dir)...)
	drain(t, r2, 2*time.Minute)
	if v := selfMetric(t, r2, "kubelet_meta_proxy_disk_queue_dropped_records_total", map[string]string{"reason": "corrupt"}); v < 1 {
		t.Fatalf(`dropped_records_total{reason="corrupt"} = %v`, v)
	}
	if logs, _ := os.ReadFile(r2.LogFile); !regexp.MustCompile(`skipping unreadable disk queue record`).Match(logs) {
		t.Fatalf("no log line about the corrupt record:\n%s", r2.Logs(30))
	}
	waitQ(t, b, fmt.Sprintf(`up{%s} == 1`, sel), settle, bed.NonEmpty)
}

// A full disk (a 2 MiB tmpfs) while Prometheus is down: appends fail with
// ENOSPC, logged and counted; the refused requests wait in memory (they must
// not overtake the disk backlog), the relay keeps scraping and serving, and
// once Prometheus is back everything arrives, none rejected as out of order.
func TestDiskQueueDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=2m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	b := needBed(t)
	promDown(t, b)
	_, r, sel := startRelay(t, diskArgs(dir, "--remote-write-queue-max-bytes", "67108864")...)
	t.Cleanup(func() { r.Stop(); _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	waitSelf(t, r, "kubelet_meta_proxy_disk_queue_append_errors_total", map[string]string{"reason": "enospc"}, 2*time.Minute,
		func(v float64) bool { return v > 0 })
	if logs, _ := os.ReadFile(r.LogFile); !regexp.MustCompile(`disk queue write failed.*reason=enospc`).Match(logs) ||
		!regexp.MustCompile(`disk queue refused a request`).Match(logs) {
		t.Fatalf("no log lines about the full disk:\n%s", r.Logs(30))
	}
	in := selfMetric(t, r, "kubelet_meta_proxy_remote_write_samples_in_total", nil)
	time.Sleep(3 * interval)
	if code, _, err := r.Get(t.Context(), "/metrics"); err != nil || code != 200 {
		t.Fatalf("/metrics with the disk full: %d %v", code, err)
	}
	held := selfMetric(t, r, "kubelet_meta_proxy_remote_write_queue_length", nil)
	if selfMetric(t, r, "kubelet_meta_proxy_remote_write_samples_in_total", nil) <= in || held == 0 {
		t.Fatalf("with the disk full the relay should go on scraping into memory (queue_length %v)", held)
	}
	if err := b.StartPrometheus(t.Context()); err != nil {
		t.Fatal(err)
	}
	drain(t, r, 3*time.Minute)
	waitSelf(t, r, "kubelet_meta_proxy_remote_write_queue_length", nil, time.Minute, func(v float64) bool { return v < 20000 })
	r.Stop()
	tot := stoppedTotals(t, r)
	got := promCount(t, b, sel, time.Now())
	t.Logf("held %.0f samples in memory with the disk full; totals %+v; Prometheus holds %d", held, tot, got)
	if tot.dropped != 0 || tot.sent != tot.in || got != tot.in {
		t.Fatalf("scraped %d, sent %d, dropped %d, Prometheus holds %d: want all delivered", tot.in, tot.sent, tot.dropped, got)
	}
}
