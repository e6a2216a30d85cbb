package loadbench

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// SetDown makes the receiver answer 503 to every request (counted as
// Refused) while down, as a receiver in an outage or an upgrade.
func (r *Receiver) SetDown(down bool) { r.down.Store(down) }

// diskQueueArgs returns the relay flags for a disk queue in a new directory
// under /var/tmp (a real disk, not a tmpfs), and a cleanup.
func diskQueueArgs(cfg Config) ([]string, func(), error) {
	if !cfg.DiskQueue {
		return nil, func() {}, nil
	}
	dir, err := os.MkdirTemp("/var/tmp", "loadbench-queue-")
	if err != nil {
		return nil, nil, err
	}
	args := []string{"--remote-write-queue-dir", dir}
	if cfg.Outage > 0 {
		// The outage must fit: the default 1 GiB is ~10 min at 40k samples/s.
		args = append(args, "--remote-write-queue-max-bytes", fmt.Sprint(int64(8)<<30))
	}
	return args, func() { os.RemoveAll(dir) }, nil
}

// runOutage runs the relay (with the disk queue when cfg.DiskQueue), lets
// it deliver a round, takes the receiver down for cfg.Outage while the
// relay keeps scraping, brings it back, and measures how long the backlog
// takes to drain while new rounds keep coming. Then, at a quiescent moment
// (kubelets held), it checks that the receiver got every sample the relay
// scraped, none out of order, none dropped.
func runOutage(ctx context.Context, cfg Config, b *bed.Bed, recv *Receiver, ks *Kubelets, logf func(string, ...any)) (*Result, string) {
	res := &Result{Enrich: true}
	recv.Reset()
	extra, cleanup, err := diskQueueArgs(cfg)
	if err != nil {
		res.Err = err
		return res, ""
	}
	defer cleanup()
	args := []string{
		"--mode=kubelet", "--kubeconfig", b.RelayKubeconfig, "--kubelet-insecure-skip-verify",
		"--kubelet-token-file", b.RelayTokenFile, "--namespace-labels=team",
		"--scrape-interval", cfg.Interval.String(), "--scrape-timeout", min(cfg.Interval, 10*time.Second).String(),
		"--remote-write-url", recv.URL, "--metrics-bind-address", "127.0.0.1",
	}
	args = append(append(args, extra...), cfg.RelayArgs...)
	res.Args = args
	r, err := b.StartRelay(ctx, args...)
	if err != nil {
		res.Err = err
		return res, ""
	}
	defer r.Stop()
	pid := r.PID()
	self := func() SelfMetrics {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		m, err := fetchSelf(c, r.BaseURL)
		if err != nil {
			logf("outage: /metrics/self: %v", err)
		}
		return m
	}
	waitFor := func(what string, timeout time.Duration, cond func(SelfMetrics) bool) (time.Duration, bool) {
		start := time.Now()
		for time.Since(start) < timeout {
			if m := self(); m != nil && cond(m) {
				return time.Since(start), true
			}
			if !sleep(ctx, 250*time.Millisecond) {
				break
			}
		}
		res.Problems = append(res.Problems, fmt.Sprintf("%s: not within %s", what, timeout))
		return time.Since(start), false
	}
	if _, ok := waitFor("first round delivered", 2*cfg.Interval+2*time.Minute, func(m SelfMetrics) bool {
		return m.Get("kubelet_meta_proxy_remote_write_samples_sent_total") > 0
	}); !ok {
		return res, ""
	}
	cpu0, _ := ProcCPU(pid)
	s0 := self()
	logf("outage: receiver down for %s (disk queue %v)", cfg.Outage, cfg.DiskQueue)
	recv.SetDown(true)
	downAt := time.Now()
	if !sleep(ctx, cfg.Outage) {
		res.Err = ctx.Err()
		return res, ""
	}
	atUp := self()
	recv.SetDown(false)
	upAt := time.Now()
	r0 := recv.Stats()
	drainTook, _ := waitFor("backlog drained", 2*cfg.Outage+5*time.Minute, func(m SelfMetrics) bool {
		return m.Get("kubelet_meta_proxy_disk_queue_samples") == 0 && m.Get("kubelet_meta_proxy_remote_write_queue_length") < 50_000 &&
			m.Get("kubelet_meta_proxy_remote_write_samples_sent_total") >= atUp.Get("kubelet_meta_proxy_remote_write_samples_in_total")
	})
	r1 := recv.Stats()
	cpu1, _ := ProcCPU(pid)
	_, hwm, _ := ProcMem(pid)

	// Quiescent totals, as runRelay: hold the kubelets until the relay has sent
	// everything it scraped.
	var final SelfMetrics
	var z ReceiverStats
	res.Quiescent = ks.waitQuiescent(ctx, time.Now().Add(time.Minute), func() bool {
		final, z = self(), recv.Stats()
		in := final.Get("kubelet_meta_proxy_remote_write_samples_in_total")
		return final != nil && float64(z.Samples) == final.Get("kubelet_meta_proxy_remote_write_samples_sent_total") && in > 0 &&
			final.Get("kubelet_meta_proxy_remote_write_queue_length") == 0 && final.Get("kubelet_meta_proxy_disk_queue_samples") == 0 &&
			ks.inFlight() == 0
	})
	res.Final, res.Recv = final, z
	in := final.Get("kubelet_meta_proxy_remote_write_samples_in_total")
	dropped := final.Get("kubelet_meta_proxy_remote_write_samples_dropped_total")
	switch {
	case !res.Quiescent:
		res.Problems = append(res.Problems, "never quiescent: receiver and relay did not agree")
	case float64(z.Samples) != in:
		res.Problems = append(res.Problems, fmt.Sprintf("receiver got %d samples, relay scraped %.0f", z.Samples, in))
	}
	if dropped != 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("relay dropped %.0f samples", dropped))
	}
	if z.NotIncreasing != 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d samples out of order at the receiver", z.NotIncreasing))
	}
	backlog := atUp.Get("kubelet_meta_proxy_disk_queue_samples")
	diskBytes := atUp.Get("kubelet_meta_proxy_disk_queue_bytes")
	delivered := r1.Samples - r0.Samples
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n## Receiver outage (%s, disk queue %v)\n\n", cfg.Outage, cfg.DiskQueue)
	fmt.Fprintf(&sb, "relay args: %s\n", strings.Join(args, " "))
	fmt.Fprintf(&sb, "scraped during the outage: %.0f samples (%.0f samples/s)\n",
		atUp.Get("kubelet_meta_proxy_remote_write_samples_in_total")-s0.Get("kubelet_meta_proxy_remote_write_samples_in_total"),
		(atUp.Get("kubelet_meta_proxy_remote_write_samples_in_total")-s0.Get("kubelet_meta_proxy_remote_write_samples_in_total"))/upAt.Sub(downAt).Seconds())
	fmt.Fprintf(&sb, "backlog when the receiver came back: %.0f samples on disk, %.1f MiB (%.1f bytes/sample), %.0f in memory\n",
		backlog, diskBytes/(1<<20), diskBytes/max(backlog, 1), atUp.Get("kubelet_meta_proxy_remote_write_queue_length"))
	fmt.Fprintf(&sb, "drained in %s while new rounds kept coming: %.0f samples delivered, %.0f samples/s\n",
		drainTook.Round(time.Second), float64(delivered), float64(delivered)/drainTook.Seconds())
	fmt.Fprintf(&sb, "relay CPU from the outage's start to drained: %.1f s; peak RSS (VmHWM) %.1f MiB\n", (cpu1 - cpu0).Seconds(), mib(hwm))
	fmt.Fprintf(&sb, "totals at a quiescent moment: relay scraped %.0f, sent %.0f, dropped %.0f; receiver got %d (%d refused requests while down), out of order %d\n",
		in, final.Get("kubelet_meta_proxy_remote_write_samples_sent_total"), dropped, z.Samples, z.Refused, z.NotIncreasing)
	fmt.Fprintf(&sb, "problems: %v\n", res.Problems)
	logf("%s", sb.String())
	return res, sb.String()
}
