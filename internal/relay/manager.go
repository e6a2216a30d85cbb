package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/value"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
)

// Sink receives every scrape's samples (remote write). Append must not block
// and must copy what it keeps.
type Sink interface {
	Append(samples []model.Sample)
}

// NamespaceSource gives the current namespace snapshot.
type NamespaceSource interface {
	Snapshot() *enrich.NamespaceIndex
}

// ManagerConfig configures the scrape loops.
type ManagerConfig struct {
	Interval, Timeout time.Duration
	MaxConcurrency    int
	HonorTimestamps   bool
	// ExternalLabels are added to every series lacking a label of the name.
	ExternalLabels []enrich.Label
	// NodeFetcher fetches node targets; PlainFetcher targets given by URL.
	NodeFetcher, PlainFetcher scrape.Fetcher
	Namespaces                NamespaceSource
	Pods                      PodConfig // zero: no pod enrichment, no check
	View                      *view.View
	Sink                      Sink // may be nil
	Logger                    *slog.Logger
	Registerer                prometheus.Registerer
	// Limits hold every target's scrapes (limits.go).
	Limits Limits
}

// Manager runs one scrape loop per target, spread over the interval.
type Manager struct {
	cfg ManagerConfig
	sem chan struct{}
	// bufs holds the body buffers of payloads read whole (not text).
	bufs freeList[*bytes.Buffer]
	// sends holds the remote-write sample buffers between scrapes: only
	// the scrapes in flight need one, not every target.
	sends freeList[[]model.Sample]
	// chunks holds the read buffers of streamed payloads.
	chunks freeList[[]byte]
	// views holds replaced views nobody reads, whose buffers the next
	// scrape of any target reuses: one view per target stays, not two.
	views freeList[*view.TargetView]
	// orders holds the buffers a scrape records its series' order in
	// (TargetCache.cur): between scrapes a target needs only the last
	// scrape's (prev), 4 bytes a series.
	orders  freeList[[]uint32]
	metrics *metrics
	podChk  *podCheckMetrics // nil when the check is off
	bounds  *boundsMetrics

	mu    sync.Mutex
	loops map[string]*loop
	// graves remember the last timestamps of targets that went away, so
	// that if one comes back none of its series gets a sample older than
	// its stale marker (which a receiver would reject, with its whole batch).
	graves map[string]grave
	wg     sync.WaitGroup
}

type grave struct {
	tombs   *tombstones
	expires time.Time
}

type loop struct {
	target  *scrape.Target
	cancel  context.CancelFunc
	done    chan struct{}
	removed bool // the target went away, as opposed to the relay stopping
	tombs   *tombstones
}

// NewManager returns a manager with no targets.
func NewManager(cfg ManagerConfig) *Manager {
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = 1
	}
	return &Manager{
		cfg:     cfg,
		sem:     make(chan struct{}, cfg.MaxConcurrency),
		bufs:    make(freeList[*bytes.Buffer], cfg.MaxConcurrency),
		sends:   make(freeList[[]model.Sample], cfg.MaxConcurrency),
		chunks:  make(freeList[[]byte], cfg.MaxConcurrency),
		views:   make(freeList[*view.TargetView], cfg.MaxConcurrency),
		orders:  make(freeList[[]uint32], cfg.MaxConcurrency),
		metrics: newMetrics(cfg.Registerer),
		podChk:  newPodCheckMetrics(cfg.Pods, cfg.Logger, cfg.Registerer),
		bounds:  newBoundsMetrics(cfg.Registerer),
		loops:   map[string]*loop{},
		graves:  map[string]grave{},
	}
}

// Sync makes the running loops match targets: new ones start at their offset
// in the interval, gone ones stop and their series go stale.
func (m *Manager) Sync(ctx context.Context, targets []*scrape.Target) {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := make(map[string]*scrape.Target, len(targets))
	for _, t := range targets {
		want[t.Key] = t
	}
	now := time.Now()
	for key, g := range m.graves {
		if now.After(g.expires) {
			delete(m.graves, key)
		}
	}
	for key, l := range m.loops {
		if t, ok := want[key]; ok && t.Same(l.target) {
			continue
		}
		l.removed = true
		l.cancel()
		<-l.done
		delete(m.loops, key)
		m.graves[key] = grave{tombs: l.tombs, expires: now.Add(tombstoneTTL)}
	}
	for key, t := range want {
		if _, ok := m.loops[key]; ok {
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		l := &loop{target: t, cancel: cancel, done: make(chan struct{})}
		m.loops[key] = l
		cache := NewTargetCache(t, m.cfg.HonorTimestamps, m.cfg.ExternalLabels...)
		cache.SetPods(m.cfg.Pods)
		cache.SetLimits(m.cfg.Limits)
		if g, ok := m.graves[key]; ok {
			cache.seed(g.tombs, now.Add(tombstoneTTL))
			delete(m.graves, key)
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer close(l.done)
			m.run(lctx, l, cache)
		}()
	}
	m.metrics.targets.Set(float64(len(m.loops)))
}

// Stop ends every loop. Their series are not marked stale: the relay is
// stopping, not the targets, and the next relay carries them on.
func (m *Manager) Stop() {
	m.mu.Lock()
	for key, l := range m.loops {
		l.cancel()
		<-l.done
		delete(m.loops, key)
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// offset places a target at a stable point inside the interval, so that the
// scrapes of many nodes spread out instead of arriving together.
func offset(key string, interval time.Duration, now time.Time) time.Duration {
	h := xxhash.Sum64String(key)
	base := interval - time.Duration(now.UnixNano()%int64(interval))
	return (time.Duration(h%uint64(interval)) + base) % interval
}

func (m *Manager) run(ctx context.Context, l *loop, cache *TargetCache) {
	t := l.target
	log := m.cfg.Logger.With("target", t.Key)
	var dropped *Result
	defer func() {
		if l.removed {
			if dropped != nil && m.cfg.Sink != nil {
				// The scrape the removal cut short already ended the
				// series in the cache: its stale markers are the ones.
				m.cfg.Sink.Append(staleOnly(dropped.Send))
			}
			// The target went away: end its series at once.
			stale := cache.MarkAllStale(time.Now())
			if m.cfg.Sink != nil {
				m.cfg.Sink.Append(stale)
			}
			l.tombs = cache.tombstoneAll()
			log.Info("target removed; its series were marked stale")
		}
		m.cfg.View.Delete(t.Key)
		m.metrics.forget(t.Key)
		m.podChk.forget(t)
		m.bounds.forget(t.Key)
	}()

	select {
	case <-time.After(offset(t.Key, m.cfg.Interval, time.Now())):
	case <-ctx.Done():
		return
	}
	ticker := time.NewTicker(m.cfg.Interval)
	defer ticker.Stop()
	var lastErr, lastDup string
	for {
		dropped = m.scrapeOnce(ctx, t, cache, log, &lastErr, &lastDup)
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return
		}
	}
}

// scrapeOnce scrapes and publishes; a scrape failed because the loop is
// stopping is not published, and returned instead.
func (m *Manager) scrapeOnce(ctx context.Context, t *scrape.Target, cache *TargetCache, log *slog.Logger, lastErr, lastDup *string) *Result {
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	defer func() { <-m.sem }()
	res := m.Scrape(ctx, t, cache)
	if ctx.Err() != nil && res.Err != nil {
		return res // shutting down, not a target failure
	}
	m.Publish(t, cache, res)
	// Log a failure when it starts or changes, not on every interval.
	switch {
	case res.Err != nil && res.Err.Error() != *lastErr:
		log.Error("scrape failed", "err", res.Err)
		*lastErr = res.Err.Error()
	case res.Err == nil && *lastErr != "":
		log.Info("scrape recovered")
		*lastErr = ""
	}
	// Duplicate series: logged when the first one changes, not every scrape.
	if res.Duplicates > 0 && res.FirstDuplicate != *lastDup {
		log.Warn("the payload has series more than once; only the first sample of each is kept",
			"num_dropped", res.Duplicates, "series", res.FirstDuplicate)
	}
	*lastDup = res.FirstDuplicate
	cache.logBounds(log, res, time.Now())
	return nil
}

func staleOnly(in []model.Sample) []model.Sample {
	var out []model.Sample
	for _, s := range in {
		if value.IsStaleNaN(s.V) {
			out = append(out, s)
		}
	}
	return out
}

// ScrapeAll scrapes every target once, at most MaxConcurrency at a time,
// and publishes the results (view, sink, self-metrics) as the loops do; it
// is the scrape-once command's path through the manager. It returns each
// target's scrape error (nil when it succeeded), in the order of targets.
func (m *Manager) ScrapeAll(ctx context.Context, targets []*scrape.Target) []error {
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case m.sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-m.sem }()
			cache := NewTargetCache(t, m.cfg.HonorTimestamps, m.cfg.ExternalLabels...)
			cache.SetPods(m.cfg.Pods)
			cache.SetLimits(m.cfg.Limits)
			res := m.Scrape(ctx, t, cache)
			errs[i] = res.Err
			m.Publish(t, cache, res)
		}()
	}
	wg.Wait()
	return errs
}

// Scrape fetches and processes one target once. A text-format payload
// (the kubelet's) is parsed as it arrives, chunk by chunk; other formats
// are read whole first.
func (m *Manager) Scrape(ctx context.Context, t *scrape.Target, cache *TargetCache) *Result {
	if cache.send == nil {
		cache.send, _ = m.sends.get()
	}
	if cache.spare == nil {
		cache.spare, _ = m.views.get()
	}
	if cache.cur == nil {
		cache.cur, _ = m.orders.get()
	}
	start := time.Now()
	ix := m.cfg.Namespaces.Snapshot()
	fctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	f := m.cfg.NodeFetcher
	if t.Node == "" {
		f = m.cfg.PlainFetcher
	}
	body, ct, err := f.Open(fctx, t)
	if err != nil {
		return cache.Process(nil, "", start, time.Since(start), ix, m.timeout(err))
	}
	defer body.Close()
	r := &timeoutReader{r: body, m: m}
	if scrape.IsText(ct) {
		buf, _ := m.chunks.get()
		res, buf := cache.ProcessStream(r, start, ix, buf)
		if cap(buf) <= maxPooledChunk { // a buffer one long line grew goes to the GC
			m.chunks.put(buf)
		}
		return res
	}
	bb, ok := m.bufs.get()
	if !ok {
		bb = new(bytes.Buffer)
	}
	defer func() {
		if bb.Cap() <= maxPooledBody { // do not pin a one-off huge body
			bb.Reset()
			m.bufs.put(bb)
		}
	}()
	bb.Reset()
	if n := cache.lastBodySize; n > bb.Cap() {
		bb.Grow(n + n/8) // one allocation, not a doubling series
	}
	if _, err := bb.ReadFrom(r); err != nil {
		return cache.Process(nil, "", start, time.Since(start), ix, err)
	}
	cache.lastBodySize = bb.Len()
	return cache.Process(bb.Bytes(), ct, start, time.Since(start), ix, nil)
}

// timeout turns a scrape cut off by Timeout into a *TimeoutError.
func (m *Manager) timeout(err error) error {
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		return &TimeoutError{Timeout: m.cfg.Timeout, Err: err}
	}
	return err
}

// timeoutReader reports reads cut off by Timeout as such.
type timeoutReader struct {
	r io.Reader
	m *Manager
}

func (r *timeoutReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		err = r.m.timeout(err)
	}
	return n, err
}

// Publish hands a result to both outputs and the relay's own metrics.
func (m *Manager) Publish(t *scrape.Target, cache *TargetCache, res *Result) {
	cache.Recycle(m.cfg.View.Set(res.View))
	if cache.spare != nil && cap(cache.spare.Samples) <= maxPooledSamples && m.views.put(cache.spare) {
		cache.spare = nil
	}
	if m.cfg.Sink != nil {
		m.cfg.Sink.Append(res.Send)
	}
	m.metrics.observe(t.Key, res)
	m.podChk.observe(t, res)
	m.bounds.observe(t.Key, res)
	// The sink copied the samples: the buffer can serve another target.
	if send := cache.send; cap(send) > 0 {
		clear(send) // do not keep label tables alive
		cache.send = nil
		res.Send = nil
		if cap(send) <= maxPooledSamples {
			m.sends.put(send[:0])
		}
	}
	// The scrape's order is prev now; the buffer cur holds (the order of
	// the scrape before) is only room for the next scrape's.
	if cur := cache.cur; cap(cur) > 0 {
		cache.cur = nil
		if cap(cur) <= maxPooledSamples {
			m.orders.put(cur[:0])
		}
	}
}

// TimeoutError is a scrape cut off by ManagerConfig.Timeout.
type TimeoutError struct {
	Timeout time.Duration
	Err     error
}

func (e *TimeoutError) Error() string {
	return "scrape timed out after " + e.Timeout.String() + ": " + e.Err.Error()
}
func (e *TimeoutError) Unwrap() error { return e.Err }

// freeList keeps up to its capacity of spare buffers for the scrapes in
// flight. Unlike a sync.Pool it is not emptied by every GC, so megabyte
// buffers are not reallocated scrape after scrape.
type freeList[T any] chan T

// get returns a spare buffer, if there is one.
func (f freeList[T]) get() (T, bool) {
	select {
	case v := <-f:
		return v, true
	default:
		var zero T
		return zero, false
	}
}

// put keeps v if there is room, and reports whether it did.
func (f freeList[T]) put(v T) bool {
	select {
	case f <- v:
		return true
	default:
		return false
	}
}
