// This file is over 500 lines because runRelay is one measurement sequence (start, warm up,
// measure the window, wait for quiescence, collect) that reads best top to bottom in one place.

package loadbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/fakekubelet"
)

// Config of one load-test run.
type Config struct {
	Workload Workload
	Interval time.Duration
	// WarmupRounds are scrape rounds not measured (the first one parses every series).
	WarmupRounds int
	// Rounds are the measured scrape rounds.
	Rounds int
	// Enrich lists the modes to run: true = --namespace-labels=team, false = "".
	Enrich []bool
	// KubeletGzip: the simulated kubelets gzip when asked, as real ones do.
	KubeletGzip bool
	// Build runs `make build` first (and hack/build-kube.sh if etcd or kube-apiserver is missing).
	Build bool
	// RelayArgs are extra flags for the relay.
	RelayArgs []string
	// PodIndex creates every generated pod in the apiserver and runs the relay with the pod
	// index on (PodIndexArgs).
	PodIndex bool
	// Endpoints are the kubelet endpoints scraped (--kubelet-endpoints); empty is cadvisor
	// alone. The simulated kubelets serve /metrics, /metrics/probes and /metrics/resource
	// from the real and generated captures.
	Endpoints []string
	// Out is the report file ("" for none).
	Out string
	// Pprof, if set, runs a build of the relay with net/http/pprof (BuildPprofRelay) and
	// saves a CPU profile of the measured window and a heap profile at its end to
	// Pprof-<on|off>.cpu.pprof and .heap.pprof. Profiling costs the relay a little CPU.
	Pprof string
	// DiskQueue runs the relay with --remote-write-queue-dir (a new directory
	// under /var/tmp); Outage > 0 runs the receiver-outage scenario instead of
	// the measured rounds (outage.go).
	DiskQueue bool
	Outage    time.Duration
	// Variants are the relay's modes to run (each with every Enrich mode, variant.go);
	// empty is kubelet mode alone. Apiserver mode puts the kube-apiserver and the kubelets
	// on the bed's netns host address (bed.Options.KubeNetns; root).
	Variants []Variant
	// Churn > 0 measures a churn window after each steady one: that share of every node's
	// pods replaced at every scrape (churn.go).
	Churn float64
	// VMAgent runs vmagent (bin/vmagent, hack/build-vmagent.sh) after the relay against the
	// same kubelets, measures it the same way and reports the relay's CPU and peak RSS as
	// ratios of vmagent's (vmagent.go). VMAgentRelabel gives it metric_relabel_configs that
	// add the team label; VMAgentArgs are extra vmagent flags.
	VMAgent        bool
	VMAgentRelabel bool
	VMAgentArgs    []string
	// Command is the command line, for the report.
	Command string
	Log     io.Writer

	relayVersion string
	tpl          *Template
	vmagent      *VMAgentResult
}

// Result is one relay run (one enrichment mode).
type Result struct {
	Enrich bool
	// Window is the measured time; Delivered the samples the receiver got in it.
	Window    time.Duration
	Delivered int64
	// CPU is the relay's utime+stime in the window.
	CPU time.Duration
	// WireBytes received in the window.
	WireBytes int64
	// PeakRSS is VmHWM at the end of the window (whole life until then: start-up, the first
	// round, the /metrics fetch; not the quiescence check after it);
	// MaxRSS and MeanRSS are VmRSS sampled every 250ms in the measured window.
	PeakRSS, MaxRSS, MeanRSS int64
	// RssAnon and RssFile split VmRSS at the end of the window: file-backed pages are
	// mostly the binary's own text and tables.
	RssAnon, RssFile int64
	// BenchCPU is the load test's own CPU in the window (simulated kubelets, receiver): on a
	// small machine it competes with the relay.
	BenchCPU time.Duration
	// HeapInuse is go_memstats_heap_inuse_bytes at the end of the window.
	HeapInuse float64
	// ScrapedWindow and ScrapesWindow are the relay's samples scraped and scrapes in the window.
	ScrapedWindow, ScrapesWindow float64
	// NodeScrapes counts nodes by how many scrapes their kubelet served in the window
	// (scrapes -> nodes): every node Rounds times, give or take one at the window's edges.
	NodeScrapes map[int64]int
	// Warmup is how long the warm-up took (relay start to every node's first scrape done).
	Warmup time.Duration
	// The one GET /metrics, made after the warm-up and before the window (so its memory is
	// in PeakRSS, its CPU is not in CPU): body bytes, time, the relay's CPU around it (which
	// includes the scrapes running meanwhile) and VmHWM before and after it.
	ViewBytes                 int64
	ViewTime, ViewCPU         time.Duration
	ViewHWMBefore, ViewHWMAft int64
	ViewErr                   error
	// Self0 and Self1 are /metrics/self at the start and the end of the window.
	Self0, Self1 SelfMetrics
	// Totals at a quiescent moment after the window (receiver and relay agree, or not).
	Quiescent bool
	Final     SelfMetrics
	Recv      ReceiverStats
	// Checks that failed (empty: delivered == scraped, nothing dropped or failed, ...).
	Problems []string
	Err      error
	Args     []string
	// Variant is how the relay ran; APIServer the kube-apiserver's cost in the window
	// (apiserver mode), KubeletBytes what the kubelets served in it; Churn the churn
	// window after the steady one (Config.Churn).
	Variant      Variant
	APIServer    *ProcWindow
	KubeletBytes int64
	Churn        *ChurnResult
}

// SamplesPerSecond delivered.
func (r *Result) SamplesPerSecond() float64 { return float64(r.Delivered) / r.Window.Seconds() }

// CPUPerMillion is CPU-seconds per million samples delivered.
func (r *Result) CPUPerMillion() float64 {
	if r.Delivered == 0 {
		return 0
	}
	return r.CPU.Seconds() / float64(r.Delivered) * 1e6
}

// BytesPerSample on the wire (snappy-compressed remote write).
func (r *Result) BytesPerSample() float64 {
	if r.Delivered == 0 {
		return 0
	}
	return float64(r.WireBytes) / float64(r.Delivered)
}

// Targets of the issue for the whole process with enrichment on.
const (
	TargetCPUPerMillion = 1.0
	TargetPeakRSSMiB    = 120
)

// Run runs the load test: builds, starts etcd + kube-apiserver (bed.Options.KubeOnly),
// the simulated kubelets and the receiver, then the relay once per enrichment mode; writes
// the report to cfg.Out and returns it.
func Run(ctx context.Context, cfg Config) (string, []*Result, error) {
	logf := func(format string, args ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, "loadbench: "+format+"\n", args...)
		}
	}
	root, err := bed.RepoRoot()
	if err != nil {
		return "", nil, err
	}
	if cfg.Build {
		if err := build(ctx, root, cfg.Log); err != nil {
			return "", nil, err
		}
		if cfg.VMAgent {
			if err := buildVMAgent(ctx, root, cfg.Log); err != nil {
				return "", nil, err
			}
		}
	}
	w := cfg.Workload
	tpl, err := LoadTemplate()
	if err != nil {
		return "", nil, err
	}
	cfg.tpl = tpl
	variants := cfg.Variants
	if len(variants) == 0 {
		variants = []Variant{{}}
	}
	start := time.Now()
	names := make([]string, w.Nodes)
	caps := make([]*fakekubelet.Capture, w.Nodes)
	nodePods := make([][]NodePod, w.Nodes)
	var series, textBytes int64
	{
		var mu sync.Mutex
		var wg sync.WaitGroup
		errs := make([]error, w.Nodes)
		sem := make(chan struct{}, runtime.NumCPU())
		for i := range w.Nodes {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				n := tpl.GenerateNode(w, i)
				c, err := n.Prepare()
				names[i], caps[i], errs[i] = n.Name, c, err
				nodePods[i] = n.Pods
				mu.Lock()
				series += int64(n.Series)
				textBytes += int64(len(n.Text))
				mu.Unlock()
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return "", nil, err
		}
	}
	logf("generated %d nodes x %d pods: %d series, %.1f MB of text per round (%s)",
		w.Nodes, w.PodsPerNode, series, float64(textBytes)/1e6, time.Since(start).Round(time.Millisecond))

	nsLabels := w.NamespaceLabels()
	// A private copy of the relay: others may rebuild bin/ while this runs.
	binDir, err := os.MkdirTemp("", "loadbench-relay-")
	if err != nil {
		return "", nil, err
	}
	defer os.RemoveAll(binDir)
	opts := bed.Options{KubeOnly: true, Namespaces: nsLabels, Log: cfg.Log,
		RelayBinary: filepath.Join(binDir, "kubelet-meta-proxy"),
		KubeNetns:   slices.ContainsFunc(variants, Variant.apiserver)}
	if cfg.Pprof != "" {
		if err := BuildPprofRelay(ctx, root, opts.RelayBinary, cfg.Log); err != nil {
			return "", nil, err
		}
		if err := os.MkdirAll(filepath.Dir(cfg.Pprof), 0o755); err != nil {
			return "", nil, err
		}
	} else if err := copyFile(filepath.Join(root, "bin", "kubelet-meta-proxy"), opts.RelayBinary); err != nil {
		return "", nil, err
	}
	cfg.relayVersion = fmt.Sprintf("%s (git %s)", strings.TrimSpace(cmdOut(opts.RelayBinary, "--version")),
		strings.TrimSpace(cmdOut("git", "describe", "--tags", "--always", "--dirty")))
	b, err := bed.Start(ctx, opts)
	if err != nil {
		return "", nil, err
	}
	defer b.Stop()
	if err := b.SetNamespaceLabel(ctx, "kube-system", "team", "platform"); err != nil {
		return "", nil, err
	}
	// Serving certificates from the bed's CA, which the kube-apiserver verifies.
	cert, clientCAs, err := b.IssueKubeletCert("loadbench", []net.IP{net.ParseIP(b.HostIP)})
	if err != nil {
		return "", nil, err
	}
	ks, err := StartKubeletsOn(KubeletListen{Host: b.HostIP, Cert: cert, ClientCAs: clientCAs}, names, caps, cfg.KubeletGzip)
	if err != nil {
		return "", nil, err
	}
	defer ks.Stop()
	if err := serveEndpoints(ks, cfg.Endpoints); err != nil {
		return "", nil, err
	}
	if err := registerNodes(ctx, b, ks); err != nil {
		return "", nil, err
	}
	logf("%d kubelets on %s registered as Nodes (%s since start)", len(ks.List), b.HostIP, time.Since(start).Round(time.Millisecond))
	if cfg.PodIndex {
		n, err := createPods(ctx, b, nodePods, names)
		if err != nil {
			return "", nil, err
		}
		cfg.RelayArgs = append(append([]string(nil), PodIndexArgs...), cfg.RelayArgs...)
		logf("%d pods created in the apiserver; relay pod index on: %v", n, PodIndexArgs)
	}
	recv, err := StartReceiver()
	if err != nil {
		return "", nil, err
	}
	defer recv.Stop()
	recv.Presize(int(series) + 3*w.Nodes)

	var results []*Result
	if cfg.Outage > 0 {
		res, text := runOutage(ctx, cfg, b, recv, ks, logf)
		report := fmt.Sprintf("# loadbench receiver outage, %d nodes x %d pods, %d series, interval %s\n\ncommand: %s\nrelay: %s\n%s",
			w.Nodes, w.PodsPerNode, series, cfg.Interval, cfg.Command, cfg.relayVersion, text)
		if res.Err != nil {
			report += fmt.Sprintf("error: %v\n", res.Err)
		}
		if cfg.Out != "" {
			_ = os.MkdirAll(filepath.Dir(cfg.Out), 0o755)
			_ = os.WriteFile(cfg.Out, []byte(report), 0o644)
		}
		return report, []*Result{res}, nil
	}
	for _, v := range variants {
		for _, enrich := range cfg.Enrich {
			res := runRelay(ctx, cfg, b, recv, v, enrich, ks, logf)
			results = append(results, res)
			if ctx.Err() != nil {
				break
			}
		}
	}
	if cfg.VMAgent && ctx.Err() == nil {
		cfg.vmagent = runVMAgent(ctx, cfg, b, ks, series, logf)
	}
	report := Report(cfg, series, textBytes, results)
	if cfg.Out != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.Out), 0o755); err != nil {
			return report, results, err
		}
		if err := os.WriteFile(cfg.Out, []byte(report), 0o644); err != nil {
			return report, results, err
		}
	}
	return report, results, nil
}

func build(ctx context.Context, root string, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	run := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, log, log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
		}
		return nil
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(root, "bin", b)); err != nil {
			if err := run("bash", "hack/build-kube.sh"); err != nil {
				return err
			}
			break
		}
	}
	return run("make", "build")
}

func registerNodes(ctx context.Context, b *bed.Bed, ks *Kubelets) error {
	var wg sync.WaitGroup
	errs := make([]error, len(ks.List))
	sem := make(chan struct{}, 16)
	for i, k := range ks.List {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = b.RegisterNode(ctx, k.Name, b.HostIP, k.Port)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// runRelay runs the relay for one mode and measures it. Errors end up in Result.Err.
func runRelay(ctx context.Context, cfg Config, b *bed.Bed, recv *Receiver, v Variant, enrich bool, ks *Kubelets, logf func(string, ...any)) *Result {
	res := &Result{Enrich: enrich, Variant: v}
	nodes := len(ks.List)
	recv.Reset()
	labels := ""
	if enrich {
		labels = "team"
	}
	args := append(v.args(b),
		"--namespace-labels="+labels,
		"--scrape-interval", cfg.Interval.String(),
		"--scrape-timeout", min(cfg.Interval, 10*time.Second).String(),
		"--remote-write-url", recv.URL,
		"--metrics-bind-address", "127.0.0.1",
	)
	if len(cfg.Endpoints) > 0 {
		args = append(args, "--kubelet-endpoints="+strings.Join(cfg.Endpoints, ","))
	}
	args = append(args, cfg.RelayArgs...)
	dq, cleanup, err := diskQueueArgs(cfg)
	if err != nil {
		res.Err = err
		return res
	}
	defer cleanup()
	args = append(args, dq...)
	res.Args = args
	pprofAddr := ""
	if cfg.Pprof != "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			res.Err = err
			return res
		}
		pprofAddr = ln.Addr().String()
		ln.Close()
		os.Setenv(PprofEnv, pprofAddr)
	}
	logf("%s: starting the relay", res.label())
	apiPID := 0
	if v.apiserver() {
		apiPID = b.APIServerPID()
		_ = resetPeak(apiPID) // its peak RSS in this relay run
	}
	// What an earlier mode's relay left in the kubelets' counters.
	base := ks.scrapeCounts()
	r, err := b.StartRelay(ctx, args...)
	if err != nil {
		res.Err = err
		return res
	}
	defer r.Stop()
	defer func() {
		if res.Err != nil {
			// The relay's own words say why (a crash, a refused flag).
			res.Err = fmt.Errorf("%w\nrelay log (%s), last lines:\n%s", res.Err, r.LogFile, r.Logs(30))
		}
	}()
	pid := r.PID()
	rss := sampleRSS(pid, 250*time.Millisecond)
	defer rss.stop()
	self := func() (SelfMetrics, error) {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return fetchSelf(c, r.BaseURL)
	}

	// Warm-up: every node scraped WarmupRounds times (the first scrape parses every series),
	// counted per node at the kubelets, and every scrape they served finished in the relay.
	// (Counting the relay's total instead starts the window while the slowest first scrapes
	// are still running, when early nodes are already on their second: those nodes then
	// finish rounds+1 scrapes in the window, one of them the expensive first one.)
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
		done := m.Get("kubelet_meta_proxy_scrape_duration_seconds_count")
		if err == nil && minServed >= warm && done >= float64(served) {
			break
		}
		if time.Now().After(deadline) {
			res.Err = fmt.Errorf("warm-up: not every node scraped %d times after %s (least-scraped node %d, relay finished %.0f of %d served; last error %v)\n%s",
				warm, time.Since(warmStart).Round(time.Second), minServed, done, served, err, r.Logs(20))
			return res
		}
		if !sleep(ctx, 200*time.Millisecond) {
			res.Err = ctx.Err()
			return res
		}
	}
	res.Warmup = time.Since(warmStart)
	logf("enrichment %s: warm-up done in %s; GET /metrics, then measuring %d rounds of %s", onOff(enrich),
		res.Warmup.Round(time.Second), cfg.Rounds, cfg.Interval)

	// The /metrics view, once, before the window: its memory is in VmHWM (peak RSS), its CPU
	// is measured on its own and not in the CPU per delivered sample.
	_, res.ViewHWMBefore, _ = ProcMem(pid)
	vcpu0, err := ProcCPU(pid)
	if err != nil {
		res.Err = err
		return res
	}
	vt := time.Now()
	res.ViewBytes, res.ViewErr = fetchView(ctx, r.BaseURL)
	res.ViewTime = time.Since(vt)
	vcpu1, err := ProcCPU(pid)
	if err != nil {
		res.Err = err
		return res
	}
	res.ViewCPU = vcpu1 - vcpu0
	_, res.ViewHWMAft, _ = ProcMem(pid)
	logf("enrichment %s: GET /metrics: %.1f MB in %s, relay CPU %.2fs", onOff(enrich),
		float64(res.ViewBytes)/1e6, res.ViewTime.Round(time.Millisecond), res.ViewCPU.Seconds())

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
	kb0 := ks.servedBytes()
	var api *procWindow
	if apiPID > 0 {
		if api, err = startProcWindow(apiPID); err != nil {
			res.Err = err
			return res
		}
	}
	window := time.Duration(cfg.Rounds) * cfg.Interval
	var profDone chan error
	if pprofAddr != "" {
		profDone = make(chan error, 1)
		go func() {
			secs := max(int(window.Seconds())-1, 1)
			profDone <- fetchProfile(ctx, pprofAddr, fmt.Sprintf("profile?seconds=%d", secs),
				cfg.Pprof+"-"+pprofName(v, enrich)+".cpu.pprof", window+time.Minute)
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
	res.KubeletBytes = ks.servedBytes() - kb0
	if api != nil {
		if res.APIServer, err = api.end(); err != nil {
			res.Err = err
			return res
		}
	}
	s1, err := self()
	if err != nil {
		res.Err = err
		return res
	}
	res.Window = t1.Sub(t0)
	res.CPU = cpu1 - cpu0
	res.BenchCPU = bcpu1 - bcpu0
	res.Self0, res.Self1 = s0, s1
	res.NodeScrapes = map[int64]int{}
	for i := range k1 {
		res.NodeScrapes[k1[i]-k0[i]]++
	}
	if profDone != nil {
		if err := <-profDone; err != nil {
			logf("cpu profile: %v", err)
		}
		if err := fetchProfile(ctx, pprofAddr, "heap", cfg.Pprof+"-"+pprofName(v, enrich)+".heap.pprof", time.Minute); err != nil {
			logf("heap profile: %v", err)
		}
		logf("profiles: %s-%s.{cpu,heap}.pprof", cfg.Pprof, pprofName(v, enrich))
	}
	res.Delivered = r1.Samples - r0.Samples
	res.WireBytes = r1.WireBytes - r0.WireBytes
	res.MaxRSS, res.MeanRSS = rss.stats()
	res.HeapInuse = s1.Get("go_memstats_heap_inuse_bytes")
	res.ScrapedWindow = s1.Get("kubelet_meta_proxy_samples_scraped_total") - s0.Get("kubelet_meta_proxy_samples_scraped_total")
	res.ScrapesWindow = s1.Get("kubelet_meta_proxy_scrape_duration_seconds_count") - s0.Get("kubelet_meta_proxy_scrape_duration_seconds_count")

	// Peak RSS now, before the hold below: the scrapes it releases all at once would add a
	// burst that a steady relay does not see.
	if _, hwm, err := ProcMem(pid); err == nil {
		res.PeakRSS = hwm
	}
	res.RssAnon, res.RssFile, _ = ProcRssSplit(pid)
	var churnProblems []string
	if cfg.Churn > 0 {
		if res.Churn, churnProblems, err = measureChurn(ctx, cfg, pid, apiPID, recv, ks, self, logf,
			pprofAddr, cfg.Pprof+"-"+pprofName(v, enrich)+"-churn.cpu.pprof"); err != nil {
			res.Err = fmt.Errorf("churn: %w", err)
			return res
		}
	}

	// Totals at a quiescent moment: every scrape the kubelets served is finished in the
	// relay and its queue is empty; the receiver's count is read before and after the
	// relay's counters, and all agree.
	res.Quiescent = ks.waitTotals(ctx, time.Now().Add(max(cfg.Interval, 20*time.Second)), base, recv, self, res, func(m SelfMetrics, z ReceiverStats, served int64) bool {
		sent := int64(m.Get("kubelet_meta_proxy_remote_write_samples_sent_total"))
		in := int64(m.Get("kubelet_meta_proxy_remote_write_samples_in_total"))
		// Dropped and failed samples are flagged on their own (check).
		gone := int64(m.Get("kubelet_meta_proxy_remote_write_samples_dropped_total") + m.Get("kubelet_meta_proxy_remote_write_samples_failed_total"))
		return z.Samples == sent && in == sent+gone && m.Get("kubelet_meta_proxy_remote_write_queue_length") == 0 &&
			ks.inFlight() == 0 && m.Get("kubelet_meta_proxy_scrape_duration_seconds_count") >= float64(served)
	})
	res.Problems = append(check(res, nodes*max(1, len(cfg.Endpoints)), cfg.Interval), churnProblems...) // one target per node and endpoint
	logf("%s: %.0f samples/s, %.3f CPU-s per million, peak RSS %.1f MiB, %.2f wire bytes/sample, problems: %v",
		res.label(), res.SamplesPerSecond(), res.CPUPerMillion(), mib(res.PeakRSS), res.BytesPerSample(), res.Problems)
	return res
}

// check lists what is wrong with a run: anything not delivered, dropped, failed, retried,
// out of order, failed scrapes, enrichment not as configured.
func check(res *Result, nodes int, interval time.Duration) []string {
	var p []string
	m, rs := res.Final, res.Recv
	if m == nil {
		return []string{"no /metrics/self"}
	}
	in := m.Get("kubelet_meta_proxy_remote_write_samples_in_total")
	sent := m.Get("kubelet_meta_proxy_remote_write_samples_sent_total")
	scraped := m.Get("kubelet_meta_proxy_samples_scraped_total")
	notNewer := m.Get("kubelet_meta_proxy_samples_not_newer_total")
	stale := m.Get("kubelet_meta_proxy_stale_markers_total")
	scrapes := m.Get("kubelet_meta_proxy_scrape_duration_seconds_count")
	if !res.Quiescent {
		p = append(p, fmt.Sprintf("never quiescent: receiver %d, relay sent %.0f, in %.0f, queued %.0f",
			rs.Samples, sent, in, m.Get("kubelet_meta_proxy_remote_write_queue_length")))
	}
	// Every sample the relay read and neither skipped as not newer nor dropped by metric
	// relabeling, plus its stale markers and the 5 series of its own per scrape (up,
	// scrape_duration_seconds, scrape_samples_scraped, scrape_samples_post_metric_relabeling,
	// scrape_series_added), went into the queue.
	dropped := m.Get("kubelet_meta_proxy_samples_relabel_dropped_total")
	if want := scraped - notNewer - dropped + stale + 5*scrapes; in != want {
		p = append(p, fmt.Sprintf("queued %.0f samples, want scraped %.0f - not newer %.0f - relabel dropped %.0f + stale %.0f + 5 x %.0f scrapes = %.0f",
			in, scraped, notNewer, dropped, stale, scrapes, want))
	}
	for _, k := range []string{"kubelet_meta_proxy_remote_write_samples_dropped_total", "kubelet_meta_proxy_remote_write_samples_failed_total",
		"kubelet_meta_proxy_remote_write_samples_retried_total", "kubelet_meta_proxy_target_scrape_errors_total"} {
		if v := m.Get(k); v != 0 {
			p = append(p, fmt.Sprintf("%s = %.0f", k, v))
		}
	}
	if up := m.Get("kubelet_meta_proxy_target_up"); int(up) != nodes {
		p = append(p, fmt.Sprintf("%.0f of %d targets up", up, nodes))
	}
	if rs.BadRequests != 0 || rs.NotIncreasing != 0 {
		p = append(p, fmt.Sprintf("receiver: %d bad requests, %d samples not after their series' previous one", rs.BadRequests, rs.NotIncreasing))
	}
	if res.Enrich && rs.WithLabel == 0 {
		p = append(p, "enrichment on but no sample has a team label")
	}
	if !res.Enrich && rs.WithLabel != 0 {
		p = append(p, fmt.Sprintf("enrichment off but %d samples have a team label", rs.WithLabel))
	}
	if res.ViewErr != nil {
		p = append(p, fmt.Sprintf("GET /metrics: %v", res.ViewErr))
	}
	if res.Delivered == 0 {
		p = append(p, "nothing delivered in the window")
	}
	// Every node is scraped once per interval: a relay that falls behind scrapes less.
	if want := float64(nodes) * res.Window.Seconds() / interval.Seconds(); res.ScrapesWindow < 0.95*want {
		p = append(p, fmt.Sprintf("%.0f scrapes in the window, want about %.0f: the relay fell behind", res.ScrapesWindow, want))
	}
	// Per node, at the kubelets: rounds each, one more or less only at the window's edges.
	rounds := int64(res.Window.Seconds()/interval.Seconds() + 0.5)
	for n, c := range res.NodeScrapes {
		if n < rounds-1 || n > rounds+1 {
			p = append(p, fmt.Sprintf("%d nodes scraped %d times in the window, want %d", c, n, rounds))
		}
	}
	return p
}

func fetchView(ctx context.Context, base string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := plainClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return n, err
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}
