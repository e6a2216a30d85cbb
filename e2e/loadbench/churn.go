package loadbench

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/fakekubelet"
)

// churnPods is how many pods of a node are replaced per round at churn frac: frac of the
// node's pods, at most its application pods (daemonset pods stay: they are replaced on
// node upgrades, not every few seconds).
func churnPods(w Workload, frac float64) int {
	return int(math.Round(frac * float64(w.PodsPerNode)))
}

// churn replaces k application pods, the oldest first (a rolling update moves through a
// node's pods in turn): new template pod, name, UID, container ids and a namespace drawn
// from the same Zipf spread.
func (g *nodeGen) churn(w Workload, k int, next *int) {
	var apps []int
	for i, c := range g.clones {
		if !c.ds {
			apps = append(apps, i)
		}
	}
	k = min(k, len(apps))
	for range k {
		i := apps[*next%len(apps)]
		*next++
		g.clones[i] = g.newClone(w, i, false)
	}
}

// churner makes a kubelet serve a new generation of its node on every scrape once it is on:
// k pods replaced each time. The next generation is prepared in the background after each
// scrape, so a scrape never waits for it (one not ready in time is counted in missed).
type churner struct {
	w    Workload
	k    int
	on   atomic.Bool
	next chan *fakekubelet.Capture // the generation to serve at the next scrape

	mu      sync.Mutex
	gen     *nodeGen
	cursor  int // next application pod to replace
	cur     *fakekubelet.Capture
	busy    bool
	served  int64 // generations served
	missed  int64 // scrapes that found no new generation ready
	prepErr error
}

// capture is what the kubelet serves now: a new generation if churn is on and one is ready.
func (c *churner) capture() *fakekubelet.Capture {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.on.Load() {
		return c.cur
	}
	select {
	case n := <-c.next:
		c.cur = n
		c.served++
	default:
		c.missed++
	}
	if !c.busy {
		c.busy = true
		go c.prepare()
	}
	return c.cur
}

// prepare builds the next generation and parks it in next.
func (c *churner) prepare() {
	c.mu.Lock()
	c.gen.churn(c.w, c.k, &c.cursor)
	n := c.gen.render()
	c.mu.Unlock()
	cp, err := n.Prepare()
	c.mu.Lock()
	c.busy = false
	if err != nil {
		c.prepErr = err
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.next <- cp
}

// startChurn gives every kubelet a churner with the next generation ready (built in
// parallel here, before the measured window), then turns churn on for all at once.
func (ks *Kubelets) startChurn(ctx context.Context, tpl *Template, w Workload, frac float64) error {
	k := churnPods(w, frac)
	if k < 1 {
		return fmt.Errorf("churn %.2f of %d pods is no pod", frac, w.PodsPerNode)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	errs := make([]error, len(ks.List))
	for i, kl := range ks.List {
		if kl.churn.Load() != nil {
			continue // a later relay run: the churners go on from where they are
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c := &churner{w: w, k: k, gen: tpl.newNodeGen(w, i), cur: kl.capture, next: make(chan *fakekubelet.Capture, 1)}
			if c.gen.name != kl.Name {
				errs[i] = fmt.Errorf("churn: kubelet %s regenerated as %s", kl.Name, c.gen.name)
				return
			}
			c.busy = true
			c.prepare()
			if c.prepErr != nil {
				errs[i] = c.prepErr
				return
			}
			kl.churn.Store(c)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, kl := range ks.List {
		kl.churn.Load().on.Store(true)
	}
	return nil
}

// stopChurn keeps every kubelet on its current generation.
func (ks *Kubelets) stopChurn() {
	for _, kl := range ks.List {
		if c := kl.churn.Load(); c != nil {
			c.on.Store(false)
		}
	}
}

// churnCounts sums generations served and scrapes that found none ready.
func (ks *Kubelets) churnCounts() (served, missed int64, err error) {
	for _, kl := range ks.List {
		if c := kl.churn.Load(); c != nil {
			c.mu.Lock()
			served += c.served
			missed += c.missed
			if c.prepErr != nil {
				err = fmt.Errorf("churn %s: %w", kl.Name, c.prepErr)
			}
			c.mu.Unlock()
		}
	}
	return served, missed, err
}

// ChurnResult is the churn window of a relay run: after its steady window, churn is turned
// on at every kubelet and the same number of rounds measured again.
type ChurnResult struct {
	Window       time.Duration
	Rounds       int
	PodsPerRound int // per node
	Delivered    int64
	CPU          time.Duration
	// Scrapes finished and stale markers written by the relay in the window.
	Scrapes, Stale float64
	// PeakRSS is VmHWM at the end of the window (whole life), MaxRSS VmRSS sampled in it.
	PeakRSS, MaxRSS int64
	APIServer       *ProcWindow
	// Generations served and scrapes that found no new one ready (served the previous one
	// again), over the whole run so far.
	Generations, NotReady int64
	NodeScrapes           map[int64]int
}

// CPUPerMillion is CPU-seconds per million samples delivered in the churn window.
func (c *ChurnResult) CPUPerMillion() float64 {
	if c.Delivered == 0 {
		return 0
	}
	return c.CPU.Seconds() / float64(c.Delivered) * 1e6
}

// measureChurn turns churn on and measures cfg.Rounds intervals of it; it leaves churn off.
// A problem (a node not scraped every round, generations not ready) is returned as text.
// With pprofAddr it saves a CPU profile of the window to profile.
func measureChurn(ctx context.Context, cfg Config, pid, apiPID int, recv *Receiver, ks *Kubelets,
	self func() (SelfMetrics, error), logf func(string, ...any), pprofAddr, profile string) (*ChurnResult, []string, error) {
	c := &ChurnResult{Rounds: cfg.Rounds, PodsPerRound: churnPods(cfg.Workload, cfg.Churn)}
	if err := ks.startChurn(ctx, cfg.tpl, cfg.Workload, cfg.Churn); err != nil {
		return nil, nil, err
	}
	defer ks.stopChurn()
	gen0, miss0, _ := ks.churnCounts()
	logf("churn %.2f on (%d pods per node per round): measuring %d rounds of %s", cfg.Churn, c.PodsPerRound, cfg.Rounds, cfg.Interval)
	rss := sampleRSS(pid, 250*time.Millisecond)
	defer rss.stop()
	var api *procWindow
	if apiPID > 0 {
		var err error
		if api, err = startProcWindow(apiPID); err != nil {
			return nil, nil, err
		}
	}
	t0 := time.Now()
	cpu0, err := ProcCPU(pid)
	if err != nil {
		return nil, nil, err
	}
	k0 := ks.scrapeCounts()
	s0, err := self()
	if err != nil {
		return nil, nil, err
	}
	r0 := recv.Stats()
	window := time.Duration(cfg.Rounds) * cfg.Interval
	var profDone chan error
	if pprofAddr != "" {
		profDone = make(chan error, 1)
		go func() {
			profDone <- fetchProfile(ctx, pprofAddr, fmt.Sprintf("profile?seconds=%d", max(int(window.Seconds())-1, 1)), profile, window+time.Minute)
		}()
	}
	if !sleep(ctx, time.Until(t0.Add(window))) {
		return nil, nil, ctx.Err()
	}
	cpu1, err := ProcCPU(pid)
	if err != nil {
		return nil, nil, err
	}
	c.Window = time.Since(t0)
	k1 := ks.scrapeCounts()
	r1 := recv.Stats()
	s1, err := self()
	if err != nil {
		return nil, nil, err
	}
	if api != nil {
		if c.APIServer, err = api.end(); err != nil {
			return nil, nil, err
		}
	}
	_, c.PeakRSS, _ = ProcMem(pid)
	c.MaxRSS, _ = rss.stats()
	c.CPU = cpu1 - cpu0
	c.Delivered = r1.Samples - r0.Samples
	d := func(k string) float64 { return s1.Get(k) - s0.Get(k) }
	c.Scrapes = d("kubelet_meta_proxy_scrape_duration_seconds_count")
	c.Stale = d("kubelet_meta_proxy_stale_markers_total")
	c.NodeScrapes = map[int64]int{}
	for i := range k1 {
		c.NodeScrapes[k1[i]-k0[i]]++
	}
	if profDone != nil {
		if err := <-profDone; err != nil {
			logf("churn cpu profile: %v", err)
		} else {
			logf("churn cpu profile: %s", profile)
		}
	}
	gen1, miss1, gerr := ks.churnCounts()
	c.Generations, c.NotReady = gen1-gen0, miss1-miss0
	var p []string
	if gerr != nil {
		p = append(p, gerr.Error())
	}
	if c.NotReady > 0 {
		p = append(p, fmt.Sprintf("churn: %d scrapes found no new generation ready", c.NotReady))
	}
	if c.Stale == 0 {
		p = append(p, "churn: no stale markers in the churn window")
	}
	rounds := int64(cfg.Rounds)
	for n, cnt := range c.NodeScrapes {
		if n < rounds-1 || n > rounds+1 {
			p = append(p, fmt.Sprintf("churn: %d nodes scraped %d times in the window, want %d", cnt, n, rounds))
		}
	}
	logf("churn: %.3f CPU-s per million (%d samples, %.0f stale markers, %d generations served), peak RSS %.1f MiB",
		c.CPUPerMillion(), c.Delivered, c.Stale, c.Generations, mib(c.PeakRSS))
	return c, p, nil
}
