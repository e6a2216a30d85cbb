package loadbench

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// Report formats the results with the machine and the exact command.
func Report(cfg Config, series, textBytes int64, results []*Result) string {
	var sb strings.Builder
	w := cfg.Workload
	fmt.Fprintf(&sb, "loadbench %dx%d: %d nodes x %d pods, %d series and %.1f MB of text per round, interval %s, %d warm-up + %d measured rounds, kubelet gzip %s\n",
		w.Nodes, w.PodsPerNode, w.Nodes, w.PodsPerNode, series, float64(textBytes)/1e6, cfg.Interval, max(cfg.WarmupRounds, 1), cfg.Rounds, onOff(cfg.KubeletGzip))
	fmt.Fprintf(&sb, "namespaces: %d (Zipf s=%.2f) + kube-system (%d-%d daemonset pods per node), %d teams; %.0f%% of app pods with 2 containers\n",
		w.Namespaces, w.ZipfS, w.DaemonSetsMin, w.DaemonSetsMax, w.Teams, 100*w.TwoContainers)
	fmt.Fprintf(&sb, "targets (enrichment on): <= %.1f CPU-s per million samples delivered, peak RSS <= %d MiB, delivered == scraped\n", TargetCPUPerMillion, TargetPeakRSSMiB)
	fmt.Fprintf(&sb, "CPU window: the relay's utime+stime over %d intervals starting after the warm-up (every node scraped and processed %d time(s))\n"+
		"and after the one GET /metrics, so CPU-s/M is scraping + enrichment + remote write only; the GET's cost is its own column\n"+
		"(relay CPU-s around it, scrapes running meanwhile included) and its memory is in peak RSS (VmHWM, whole life).\n\n",
		cfg.Rounds, max(cfg.WarmupRounds, 1))

	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "enrich\tsamples/s\tCPU-s/M samples\trelay cores\tbench cores\tpeak RSS MiB\tmax RSS MiB (window)\theap inuse MiB\twire B/sample\t/metrics MB (s, CPU-s)\tdelivered==scraped\ttargets\t")
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintf(tw, "%s\terror\t\t\t\t\t\t\t\t\t\t\t\n", r.label())
			continue
		}
		ok := "yes"
		if len(r.Problems) > 0 {
			ok = "NO"
		}
		tg := "-"
		if r.Enrich {
			tg = "met"
			var miss []string
			if r.CPUPerMillion() > TargetCPUPerMillion {
				miss = append(miss, "cpu")
			}
			if mib(r.PeakRSS) > TargetPeakRSSMiB {
				miss = append(miss, "rss")
			}
			if len(r.Problems) > 0 {
				miss = append(miss, "delivery")
			}
			if len(miss) > 0 {
				tg = "MISSED: " + strings.Join(miss, ",")
			}
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.3f\t%.2f\t%.2f\t%.1f\t%.1f\t%.1f\t%.2f\t%.1f (%.2f, %.2f)\t%s\t%s\t\n",
			r.label(), r.SamplesPerSecond(), r.CPUPerMillion(), r.CPU.Seconds()/r.Window.Seconds(), r.BenchCPU.Seconds()/r.Window.Seconds(),
			mib(r.PeakRSS), mib(r.MaxRSS), r.HeapInuse/(1<<20), r.BytesPerSample(),
			float64(r.ViewBytes)/1e6, r.ViewTime.Seconds(), r.ViewCPU.Seconds(), ok, tg)
	}
	tw.Flush()
	sb.WriteString(variantReport(results))

	for _, r := range results {
		fmt.Fprintf(&sb, "\n%s:\n", map[bool]string{true: "enrichment " + r.label(), false: r.label()}[r.Variant.Mode == ""])
		if r.Err != nil {
			fmt.Fprintf(&sb, "  error: %v\n", r.Err)
			continue
		}
		fmt.Fprintf(&sb, "  window %s: %d samples delivered, relay CPU %.2fs, %.0f scrapes, %.0f samples scraped, %d wire bytes; bench (kubelets + receiver) CPU %.2fs\n",
			r.Window.Round(time.Millisecond), r.Delivered, r.CPU.Seconds(), r.ScrapesWindow, r.ScrapedWindow, r.WireBytes, r.BenchCPU.Seconds())
		fmt.Fprintf(&sb, "  scrapes per node in the window (served by the kubelets): %s; warm-up took %s\n", nodeScrapes(r.NodeScrapes), r.Warmup.Round(time.Millisecond))
		fmt.Fprintf(&sb, "  GET /metrics before the window: %d bytes in %.2fs, relay CPU %.2fs around it; VmHWM %.1f MiB before, %.1f MiB after\n",
			r.ViewBytes, r.ViewTime.Seconds(), r.ViewCPU.Seconds(), mib(r.ViewHWMBefore), mib(r.ViewHWMAft))
		d := func(k string) float64 { return r.Self1.Get(k) - r.Self0.Get(k) }
		const rw = "kubelet_meta_proxy_remote_write_"
		reqs := d(rw + "request_duration_seconds_count")
		var codes []string
		for _, k := range r.Self1.keysWith(rw + "request_duration_seconds_count/") {
			codes = append(codes, fmt.Sprintf("%s=%.0f", strings.TrimPrefix(k, rw+"request_duration_seconds_count/"), d(k)))
		}
		fmt.Fprintf(&sb, "  remote write in the window: %.0f requests (%s), mean %.3fs, %.0f samples/request, %.0f bytes sent; GCs in the window %.0f (%.2fs of pauses)\n",
			reqs, strings.Join(codes, " "), d(rw+"request_duration_seconds_sum")/max(reqs, 1), float64(r.Delivered)/max(reqs, 1),
			d(rw+"bytes_sent_total"), d("go_gc_duration_seconds_count"), d("go_gc_duration_seconds_sum"))
		m := r.Final
		var drops []string
		for _, k := range m.keysWith(rw + "samples_dropped_total/") {
			drops = append(drops, fmt.Sprintf("%s=%.0f (before the window %.0f, in it %.0f)", strings.TrimPrefix(k, rw+"samples_dropped_total/"), m[k], r.Self0.Get(k), d(k)))
		}
		if len(drops) == 0 {
			drops = []string{"none"}
		}
		fmt.Fprintf(&sb, "  dropped by reason (total): %s; shards %.0f, queue capacity %.0f\n",
			strings.Join(drops, " "), m.Get(rw+"shards"), m.Get(rw+"queue_capacity"))
		fmt.Fprintf(&sb, "  totals (quiescent=%v): relay scraped %.0f, not newer %.0f, stale %.0f, scrapes %.0f, queued %.0f, sent %.0f, dropped %.0f, failed %.0f, retried %.0f; receiver %s\n",
			r.Quiescent, m.Get("kubelet_meta_proxy_samples_scraped_total"), m.Get("kubelet_meta_proxy_samples_not_newer_total"),
			m.Get("kubelet_meta_proxy_stale_markers_total"), m.Get("kubelet_meta_proxy_scrape_duration_seconds_count"),
			m.Get("kubelet_meta_proxy_remote_write_samples_in_total"), m.Get("kubelet_meta_proxy_remote_write_samples_sent_total"),
			m.Get("kubelet_meta_proxy_remote_write_samples_dropped_total"), m.Get("kubelet_meta_proxy_remote_write_samples_failed_total"),
			m.Get("kubelet_meta_proxy_remote_write_samples_retried_total"), r.Recv)
		var enr []string
		for _, k := range m.keysWith("kubelet_meta_proxy_enrichment_total/") {
			enr = append(enr, fmt.Sprintf("%s=%.0f", strings.TrimPrefix(k, "kubelet_meta_proxy_enrichment_total/"), m[k]))
		}
		fmt.Fprintf(&sb, "  enrichment: %s; scrape duration mean %.3fs (window %.3fs); RSS mean in window %.1f MiB; GCs %.0f (whole life)\n",
			strings.Join(enr, " "), m.Get("kubelet_meta_proxy_scrape_duration_seconds_sum")/max(m.Get("kubelet_meta_proxy_scrape_duration_seconds_count"), 1),
			d("kubelet_meta_proxy_scrape_duration_seconds_sum")/max(r.ScrapesWindow, 1), mib(r.MeanRSS), m.Get("go_gc_duration_seconds_count"))
		if len(r.Problems) > 0 {
			fmt.Fprintf(&sb, "  PROBLEMS: %s\n", strings.Join(r.Problems, "; "))
		}
		fmt.Fprintf(&sb, "  relay: bin/kubelet-meta-proxy run %s\n", strings.Join(r.Args, " "))
	}

	sb.WriteString(vmagentSection(cfg, results))
	fmt.Fprintf(&sb, "\nmachine: %d CPUs (%s), %s/%s; %s; loadbench built with %s\n", runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH,
		strings.TrimSpace(cmdOut("go", "version")), runtime.Version())
	fmt.Fprintf(&sb, "relay: %s\n", cfg.relayVersion)
	fmt.Fprintf(&sb, "date: %s\ncommand: %s\n", time.Now().Format(time.RFC3339), cfg.Command)
	return sb.String()
}

// nodeScrapes formats scrapes -> nodes as "4 x 498 nodes, 5 x 2 nodes".
func nodeScrapes(h map[int64]int) string {
	ks := make([]int64, 0, len(h))
	for k := range h {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	var out []string
	for _, k := range ks {
		out = append(out, fmt.Sprintf("%d x %d nodes", k, h[k]))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func cmdOut(name string, args ...string) string {
	cmd := exec.Command(name, args...)
	if root, err := bed.RepoRoot(); err == nil {
		cmd.Dir = root
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(%s: %v)", name, err)
	}
	return string(out)
}
