package loadbench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// Targets of issue 17 for the whole relay process against vmagent, 50x30 profile with
// enrichment on, measured in the same run: relay CPU-s per million samples delivered at
// most 0.35x vmagent's, relay peak RSS at most 0.75x vmagent's.
const (
	TargetVMAgentCPURatio = 0.35
	TargetVMAgentRSSRatio = 0.75
)

// vmagentAutoSeries is how many series vmagent adds per scrape (up, scrape_duration_seconds,
// scrape_response_size_bytes, scrape_samples_scraped, scrape_samples_post_metric_relabeling,
// scrape_series_added, scrape_timeout_seconds: no sample, series or label limit is set).
const vmagentAutoSeries = 7

// VMAgentResult is vmagent measured exactly as runRelay measures the relay: the same
// simulated kubelets, warm-up, number of rounds, utime+stime over the window, samples
// delivered as counted by a receiver of its own (so the counts never mix with the relay's),
// VmHWM at the end of the window. The relay-only fields of Result stay zero: vmagent has
// no enriched /metrics view to GET, so its peak RSS has no such request in it.
type VMAgentResult struct {
	Result
	// Version is `vmagent -version`.
	Version string
	// Relabel: vmagent added the team label with metric_relabel_configs (VMAgentRelabel).
	Relabel bool
}

// VMScrapeTarget is one kubelet target of vmagent's scrape config.
type VMScrapeTarget struct {
	Node string
	Addr string // host:port
}

// VMScrapeOptions are what vmagentScrapeConfig needs besides the targets.
type VMScrapeOptions struct {
	Interval, Timeout time.Duration
	TokenFile         string
	// Paths are the kubelet paths scraped (one scrape job each); /metrics/cadvisor if none.
	Paths []string
	// TeamOf maps namespace -> team; non-empty adds metric_relabel_configs that set the team
	// label from the namespace label, one rule per team (VMAgentRelabel).
	TeamOf map[string]string
}

// vmagentScrapeConfig renders the -promscrape.config for the kubelets: the targets and
// labels the relay gives them in kubelet mode (instance=HOST:PORT, job=kubelet, node,
// metrics_path, service=kubelet, endpoint=https-metrics), HTTPS without verification and
// a bearer token as the relay's --kubelet-insecure-skip-verify --kubelet-token-file, the
// relay's interval and timeout, and honor_timestamps: true, the relay's default
// (vmagent's default is false).
func vmagentScrapeConfig(targets []VMScrapeTarget, o VMScrapeOptions) ([]byte, error) {
	if len(targets) == 0 || o.Interval <= 0 || o.Timeout <= 0 || o.TokenFile == "" {
		return nil, fmt.Errorf("vmagent scrape config: need targets, interval, timeout and a token file")
	}
	paths := o.Paths
	if len(paths) == 0 {
		paths = []string{"/metrics/cadvisor"}
	}
	var jobs []any
	for _, p := range paths {
		var statics []any
		for _, t := range targets {
			statics = append(statics, map[string]any{
				"targets": []string{t.Addr},
				"labels": map[string]string{"node": t.Node, "metrics_path": p, "service": "kubelet",
					"endpoint": "https-metrics"},
			})
		}
		// job_name must be unique per scrape config; every endpoint's job label is kubelet,
		// as the relay's.
		name := "kubelet"
		if p != "/metrics/cadvisor" {
			name = "kubelet" + strings.ReplaceAll(strings.TrimPrefix(p, "/metrics"), "/", "-")
			if name == "kubelet" {
				name = "kubelet-metrics"
			}
		}
		job := map[string]any{
			"job_name": name, "scheme": "https", "metrics_path": p, "honor_timestamps": true,
			"bearer_token_file": o.TokenFile, "tls_config": map[string]any{"insecure_skip_verify": true},
			"static_configs": statics,
		}
		if name != "kubelet" {
			job["relabel_configs"] = []any{map[string]any{"target_label": "job", "replacement": "kubelet"}}
		}
		if rules := teamRelabel(o.TeamOf); len(rules) > 0 {
			job["metric_relabel_configs"] = rules
		}
		jobs = append(jobs, job)
	}
	return yaml.Marshal(map[string]any{
		"global":         map[string]any{"scrape_interval": o.Interval.String(), "scrape_timeout": o.Timeout.String()},
		"scrape_configs": jobs,
	})
}

// teamRelabel is one rule per team: namespace in (that team's namespaces) -> team=TEAM,
// the static equivalent of the relay's --namespace-labels=team.
func teamRelabel(teamOf map[string]string) []any {
	byTeam := map[string][]string{}
	for ns, team := range teamOf {
		byTeam[team] = append(byTeam[team], ns)
	}
	teams := make([]string, 0, len(byTeam))
	for t := range byTeam {
		teams = append(teams, t)
	}
	sort.Strings(teams)
	var rules []any
	for _, t := range teams {
		nss := byTeam[t]
		sort.Strings(nss)
		rules = append(rules, map[string]any{"source_labels": []string{"namespace"},
			"regex": strings.Join(nss, "|"), "target_label": "team", "replacement": t})
	}
	return rules
}

// buildVMAgent runs hack/build-vmagent.sh (a no-op when bin/vmagent is at the pinned version).
func buildVMAgent(ctx context.Context, root string, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "hack", "build-vmagent.sh"))
	cmd.Dir, cmd.Stdout, cmd.Stderr = root, log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("hack/build-vmagent.sh: %w", err)
	}
	return nil
}

// runVMAgent runs vmagent against the kubelets (after the relay has stopped) and measures
// it as runRelay measures the relay. Errors end up in Result.Err.
func runVMAgent(ctx context.Context, cfg Config, b *bed.Bed, ks *Kubelets, series int64, logf func(string, ...any)) *VMAgentResult {
	res := &VMAgentResult{Relabel: cfg.VMAgentRelabel}
	var err error
	if res.Version, err = b.VMAgentVersion(); err != nil {
		res.Err = err
		return res
	}
	// A receiver of its own: vmagent's deliveries are counted apart from the relay's.
	recv, err := StartReceiver()
	if err != nil {
		res.Err = err
		return res
	}
	defer recv.Stop()
	nodes := len(ks.List)
	targets := nodes * max(1, len(cfg.Endpoints))
	recv.Presize(int(series) + vmagentAutoSeries*targets)
	recv.Reset()

	// The send queue on disk, as the relay's -disk-queue directory (vmagent always has a
	// file-backed queue; it writes to it only when its in-memory blocks are full).
	dir, err := os.MkdirTemp("/var/tmp", "loadbench-vmagent-")
	if err != nil {
		res.Err = err
		return res
	}
	defer os.RemoveAll(dir)
	so := VMScrapeOptions{Interval: cfg.Interval, Timeout: min(cfg.Interval, 10*time.Second), TokenFile: b.RelayTokenFile}
	for _, e := range cfg.Endpoints {
		if e == "cadvisor" {
			so.Paths = append(so.Paths, "/metrics/cadvisor")
		} else if ep, ok := endpointCaptures[e]; ok {
			so.Paths = append(so.Paths, ep.path)
		}
	}
	if cfg.VMAgentRelabel {
		so.TeamOf = map[string]string{"kube-system": "platform"}
		for ns, ls := range cfg.Workload.NamespaceLabels() {
			so.TeamOf[ns] = ls["team"]
		}
	}
	ts := make([]VMScrapeTarget, nodes)
	for i, k := range ks.List {
		ts[i] = VMScrapeTarget{Node: k.Name, Addr: k.Addr}
	}
	conf, err := vmagentScrapeConfig(ts, so)
	if err != nil {
		res.Err = err
		return res
	}
	confFile := filepath.Join(dir, "scrape.yaml")
	if err := os.WriteFile(confFile, conf, 0o644); err != nil {
		res.Err = err
		return res
	}

	logf("vmagent: starting %s", res.Version)
	base := ks.scrapeCounts()
	v, err := b.StartVMAgent(ctx, bed.VMAgentOptions{ConfigFile: confFile, RemoteWriteURL: recv.URL,
		DataDir: filepath.Join(dir, "queue"), Args: cfg.VMAgentArgs})
	if err != nil {
		res.Err = err
		return res
	}
	defer v.Stop()
	res.Args = v.Args
	defer func() {
		if res.Err != nil {
			res.Err = fmt.Errorf("%w\nvmagent log (%s), last lines:\n%s", res.Err, v.LogFile, v.Logs(30))
		}
	}()
	pid := v.PID()
	rss := sampleRSS(pid, 250*time.Millisecond)
	defer rss.stop()
	self := func() (SelfMetrics, error) {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return fetchMetrics(c, v.URL+"/metrics")
	}
	// Scrapes processed: vmagent records a scrape's sample count after parsing it, before
	// sending (vm_promscrape_scraped_samples is a histogram: _count is scrapes).
	const done = "vm_promscrape_scraped_samples_count"

	// Warm-up as the relay's: every node scraped WarmupRounds times at the kubelets, and
	// every scrape they served processed.
	warm := int64(max(cfg.WarmupRounds, 1))
	warmStart := time.Now()
	deadline := warmStart.Add(time.Duration(warm+2)*cfg.Interval + 90*time.Second)
	for {
		minServed, served := int64(-1), int64(0)
		for i, c := range ks.scrapeCounts() {
			d := c - base[i]
			served += d
			if minServed < 0 || d < minServed {
				minServed = d
			}
		}
		m, err := self()
		if err == nil && minServed >= warm && m.Get(done) >= float64(served) {
			break
		}
		if time.Now().After(deadline) {
			res.Err = fmt.Errorf("vmagent warm-up: not every node scraped %d times after %s (least-scraped node %d, vmagent processed %.0f of %d served; last error %v)",
				warm, time.Since(warmStart).Round(time.Second), minServed, m.Get(done), served, err)
			return res
		}
		if !sleep(ctx, 200*time.Millisecond) {
			res.Err = ctx.Err()
			return res
		}
	}
	res.Warmup = time.Since(warmStart)
	logf("vmagent: warm-up done in %s; measuring %d rounds of %s", res.Warmup.Round(time.Second), cfg.Rounds, cfg.Interval)

	rss.reset()
	t0 := time.Now()
	cpu0, err := ProcCPU(pid)
	if err != nil {
		res.Err = err
		return res
	}
	bcpu0, _ := ProcCPU(os.Getpid())
	k0 := ks.scrapeCounts()
	s0, err := self()
	if err != nil {
		res.Err = err
		return res
	}
	r0 := recv.Stats()
	window := time.Duration(cfg.Rounds) * cfg.Interval
	// -pprof: vmagent serves net/http/pprof on its listen address always; the same profiles
	// as the relay's, to compare where each spends (the relay's have the enrichment mode in
	// their name, these -vmagent).
	var profDone chan error
	addr := strings.TrimPrefix(v.URL, "http://")
	if cfg.Pprof != "" {
		profDone = make(chan error, 1)
		go func() {
			profDone <- fetchProfile(ctx, addr, fmt.Sprintf("profile?seconds=%d", max(int(window.Seconds())-1, 1)),
				cfg.Pprof+"-vmagent.cpu.pprof", window+time.Minute)
		}()
	}
	if !sleep(ctx, time.Until(t0.Add(window))) {
		res.Err = ctx.Err()
		return res
	}
	cpu1, err := ProcCPU(pid)
	if err != nil {
		res.Err = err
		return res
	}
	t1 := time.Now()
	bcpu1, _ := ProcCPU(os.Getpid())
	k1 := ks.scrapeCounts()
	r1 := recv.Stats()
	s1, err := self()
	if err != nil {
		res.Err = err
		return res
	}
	if profDone != nil {
		if err := <-profDone; err != nil {
			logf("vmagent cpu profile: %v", err)
		}
		if err := fetchProfile(ctx, addr, "heap", cfg.Pprof+"-vmagent.heap.pprof", time.Minute); err != nil {
			logf("vmagent heap profile: %v", err)
		}
		logf("vmagent profiles: %s-vmagent.{cpu,heap}.pprof", cfg.Pprof)
	}
	// After the profiles, as for the relay.
	if _, hwm, err := ProcMem(pid); err == nil {
		res.PeakRSS = hwm
	}
	res.RssAnon, res.RssFile, _ = ProcRssSplit(pid)
	res.Window, res.CPU, res.BenchCPU = t1.Sub(t0), cpu1-cpu0, bcpu1-bcpu0
	res.Self0, res.Self1 = s0, s1
	res.NodeScrapes = map[int64]int{}
	for i := range k1 {
		res.NodeScrapes[k1[i]-k0[i]]++
	}
	res.Delivered, res.WireBytes = r1.Samples-r0.Samples, r1.WireBytes-r0.WireBytes
	res.MaxRSS, res.MeanRSS = rss.stats()
	res.HeapInuse = s1.Get("go_memstats_heap_inuse_bytes")
	res.ScrapedWindow = s1.Get("vm_promscrape_scraped_samples_sum") - s0.Get("vm_promscrape_scraped_samples_sum")
	res.ScrapesWindow = s1.Get(done) - s0.Get(done)

	// Totals at a quiescent moment, as for the relay: kubelets held, every served scrape
	// processed, nothing pending in vmagent's queue, the receiver's count steady and equal to
	// what vmagent queued.
	res.Quiescent = ks.waitTotals(ctx, time.Now().Add(max(cfg.Interval, 20*time.Second)), base, recv, self, &res.Result, func(m SelfMetrics, z ReceiverStats, served int64) bool {
		return float64(z.Samples) == m.Get("vmagent_remotewrite_rows_pushed_after_relabel_total") &&
			m.Get("vmagent_remotewrite_pending_data_bytes") == 0 && ks.inFlight() == 0 && m.Get(done) >= float64(served)
	})
	res.Problems = checkVMAgent(res, targets, cfg.Interval)
	logf("vmagent: %.0f samples/s, %.3f CPU-s per million, peak RSS %.1f MiB, %.2f wire bytes/sample, problems: %v",
		res.SamplesPerSecond(), res.CPUPerMillion(), mib(res.PeakRSS), res.BytesPerSample(), res.Problems)
	return res
}

// checkVMAgent lists what is wrong with vmagent's run: the same delivery checks as the
// relay's where vmagent has the counters.
func checkVMAgent(res *VMAgentResult, targets int, interval time.Duration) []string {
	var p []string
	m, rs := res.Final, res.Recv
	if m == nil {
		return []string{"no vmagent /metrics"}
	}
	queued := m.Get("vmagent_remotewrite_rows_pushed_after_relabel_total")
	scraped := m.Get("vm_promscrape_scraped_samples_sum")
	scrapes := m.Get("vm_promscrape_scraped_samples_count")
	stale := m.Get("vm_promscrape_stale_samples_created_total")
	if !res.Quiescent {
		p = append(p, fmt.Sprintf("never quiescent: receiver %d, vmagent queued %.0f, pending %.0f bytes",
			rs.Samples, queued, m.Get("vmagent_remotewrite_pending_data_bytes")))
	}
	// What vmagent queued is what it scraped, its own series per scrape and its stale
	// markers (metric relabeling here only adds a label).
	if want := scraped + vmagentAutoSeries*scrapes + stale; queued != want {
		p = append(p, fmt.Sprintf("vmagent queued %.0f samples, want scraped %.0f + %d x %.0f scrapes + stale %.0f = %.0f",
			queued, scraped, vmagentAutoSeries, scrapes, stale, want))
	}
	for _, k := range []string{"vm_promscrape_scrapes_failed_total", "vm_promscrape_scrapes_timed_out_total",
		"vmagent_remotewrite_samples_dropped_total", "vmagent_remotewrite_packets_dropped_total", "vmagent_remotewrite_retries_count_total",
		"vm_persistentqueue_bytes_dropped_total"} {
		if v := m.Get(k); v != 0 {
			p = append(p, fmt.Sprintf("%s = %.0f", k, v))
		}
	}
	if rs.BadRequests != 0 || rs.NotIncreasing != 0 {
		p = append(p, fmt.Sprintf("receiver: %d bad requests, %d samples not after their series' previous one", rs.BadRequests, rs.NotIncreasing))
	}
	if res.Relabel && rs.WithLabel == 0 {
		p = append(p, "team relabeling on but no sample has a team label")
	}
	if res.Delivered == 0 {
		p = append(p, "nothing delivered in the window")
	}
	if want := float64(targets) * res.Window.Seconds() / interval.Seconds(); res.ScrapesWindow < 0.95*want {
		p = append(p, fmt.Sprintf("%.0f scrapes in the window, want about %.0f: vmagent fell behind", res.ScrapesWindow, want))
	}
	rounds := int64(res.Window.Seconds()/interval.Seconds() + 0.5)
	for n, c := range res.NodeScrapes {
		if n < rounds-1 || n > rounds+1 {
			p = append(p, fmt.Sprintf("%d nodes scraped %d times in the window, want %d", c, n, rounds))
		}
	}
	return p
}

// VMAgentRatio is the relay's figure over vmagent's (0 when vmagent's is 0).
func VMAgentRatio(relay, vmagent float64) float64 {
	if vmagent == 0 {
		return 0
	}
	return relay / vmagent
}

// vmagentSection is the report's comparison: vmagent's own figures, then per relay mode
// the ratios relay/vmagent of CPU-s per million samples delivered and of peak RSS (also
// without the relay's GET /metrics, which vmagent has no counterpart of), with the issue's
// targets checked for enrichment on. "" when vmagent did not run.
func vmagentSection(cfg Config, results []*Result) string {
	vm := cfg.vmagent
	if vm == nil {
		return ""
	}
	var sb strings.Builder
	relabel := "none (plain scrape and remote write: the relay's enrichment has no vmagent counterpart)"
	if vm.Relabel {
		relabel = "metric_relabel_configs setting team from namespace, one rule per team (static copy of the namespace labels)"
	}
	fmt.Fprintf(&sb, "\nvmagent (%s), same kubelets, same rounds, measured the same way; relabeling: %s\n", vm.Version, relabel)
	if vm.Err != nil {
		fmt.Fprintf(&sb, "  error: %v\n", vm.Err)
		return sb.String()
	}
	fmt.Fprintf(&sb, "targets (relay with enrichment on / vmagent): CPU-s/M <= %.2fx, peak RSS <= %.2fx\n\n", TargetVMAgentCPURatio, TargetVMAgentRSSRatio)
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "who\tsamples/s\tCPU-s/M samples\tcores\tpeak RSS MiB\tmax RSS MiB (window)\tRSS anon+file MiB (end)\twire B/sample\tCPU ratio\tpeak RSS ratio\tpeak RSS ratio w/o GET /metrics\ttargets\t")
	fmt.Fprintf(tw, "vmagent\t%.0f\t%.3f\t%.2f\t%.1f\t%.1f\t%.1f+%.1f\t%.2f\t1\t1\t1\t-\t\n", vm.SamplesPerSecond(), vm.CPUPerMillion(),
		vm.CPU.Seconds()/vm.Window.Seconds(), mib(vm.PeakRSS), mib(vm.MaxRSS), mib(vm.RssAnon), mib(vm.RssFile), vm.BytesPerSample())
	for _, r := range results {
		if r.Err != nil {
			continue
		}
		cpu := VMAgentRatio(r.CPUPerMillion(), vm.CPUPerMillion())
		rss := VMAgentRatio(float64(r.PeakRSS), float64(vm.PeakRSS))
		tg := "-"
		if r.Enrich {
			tg = "met"
			var miss []string
			if cpu > TargetVMAgentCPURatio {
				miss = append(miss, "cpu")
			}
			if rss > TargetVMAgentRSSRatio {
				miss = append(miss, "rss")
			}
			if len(miss) > 0 {
				tg = "MISSED: " + strings.Join(miss, ",")
			}
		}
		fmt.Fprintf(tw, "relay enrich %s\t%.0f\t%.3f\t%.2f\t%.1f\t%.1f\t%.1f+%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t\n", onOff(r.Enrich), r.SamplesPerSecond(), r.CPUPerMillion(),
			r.CPU.Seconds()/r.Window.Seconds(), mib(r.PeakRSS), mib(r.MaxRSS), mib(r.RssAnon), mib(r.RssFile), r.BytesPerSample(), cpu, rss,
			VMAgentRatio(float64(r.ViewHWMBefore), float64(vm.PeakRSS)), tg)
	}
	tw.Flush()
	fmt.Fprintf(&sb, "  vmagent window %s: %d samples delivered, CPU %.2fs, %.0f scrapes, %.0f samples scraped, %d wire bytes; bench CPU %.2fs; warm-up %s\n",
		vm.Window.Round(time.Millisecond), vm.Delivered, vm.CPU.Seconds(), vm.ScrapesWindow, vm.ScrapedWindow, vm.WireBytes, vm.BenchCPU.Seconds(), vm.Warmup.Round(time.Millisecond))
	fmt.Fprintf(&sb, "  scrapes per node in the window: %s; heap inuse %.1f MiB, RSS mean in window %.1f MiB\n",
		nodeScrapes(vm.NodeScrapes), vm.HeapInuse/(1<<20), mib(vm.MeanRSS))
	m := vm.Final
	fmt.Fprintf(&sb, "  totals (quiescent=%v): scraped %.0f in %.0f scrapes, stale %.0f, queued %.0f, pending %.0f bytes, %.0f bytes written to its disk queue; receiver %s\n",
		vm.Quiescent, m.Get("vm_promscrape_scraped_samples_sum"), m.Get("vm_promscrape_scraped_samples_count"),
		m.Get("vm_promscrape_stale_samples_created_total"), m.Get("vmagent_remotewrite_rows_pushed_after_relabel_total"),
		m.Get("vmagent_remotewrite_pending_data_bytes"), m.Get("vm_persistentqueue_bytes_written_total"), vm.Recv)
	d := func(k string) float64 { return vm.Self1.Get(k) - vm.Self0.Get(k) }
	fmt.Fprintf(&sb, "  in the window: %.0f remote-write requests, %.0f bytes sent; GCs %.0f (GOGC %.0f); scrape duration mean %.3fs\n",
		d("vmagent_remotewrite_requests_total"), d("vmagent_remotewrite_bytes_sent_total"), d("go_gc_duration_seconds_count"),
		m.Get("vm_gogc"), d("vm_promscrape_scrape_duration_seconds_sum")/max(d("vm_promscrape_scrape_duration_seconds_count"), 1))
	if len(vm.Problems) > 0 {
		fmt.Fprintf(&sb, "  PROBLEMS (vmagent): %s\n", strings.Join(vm.Problems, "; "))
	}
	fmt.Fprintf(&sb, "  vmagent: bin/vmagent %s\n", strings.Join(vm.Args, " "))
	return sb.String()
}
