package remotewrite

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// sweepInterval is how often idle tenants and unused lineage caches are
// looked for (by Append, which runs every scrape anyway).
const sweepInterval = 10 * time.Second

// tenantQueue is the sending machinery of an endpoint with tenant routing:
// the queue of an endpoint without it (queue) shards by producer; this one
// keeps one FIFO per tenant, and Shards workers send, one request at a time
// each, whichever tenant is due, round-robin. A tenant is sent by at most one
// worker at a time and retries its batch before any later one, and a series
// always has the same tenant (its labels decide), so every series keeps its
// order. Because batches form per tenant rather than per shard, a tenant's
// requests stay as large as without routing (fewer, larger requests
// compress better; see BenchmarkTenantAppend).
//
// Fairness: a tenant whose request fails (429 over its limits, 5xx) or is
// rejected (400) waits its own backoff (or Retry-After) with its batch; the
// workers meanwhile send the other tenants. The queue's Capacity is shared:
// when it is full the tenant holding the most loses its oldest samples, so
// one backed-off tenant fills at most the room the others do not use, and
// costs the others nothing while there is room.
//
// Memory: Capacity samples in the FIFOs (32 bytes each) plus one batch per
// worker and one held batch per backed-off tenant; at most MaxTenants
// tenants, each forgotten (FIFO, counters, metric series) once it has had
// nothing to send for IdleTimeout.
type tenantQueue struct {
	name     string
	urlLabel string
	cfg      QueueConfig
	tcfg     TenantConfig
	client   *client
	logger   *slog.Logger
	metrics  *queueMetrics
	tm       *tenantMetrics
	limiter  *logLimiter
	now      func() time.Time
	notify   chan struct{} // something may be due; capacity Shards

	highestSent     atomic.Int64
	shutdownDropped *atomic.Int64

	mu       sync.Mutex
	router   *tenantRouter
	tenants  []*tenantState // by tenant ID; nil when forgotten or never queued
	live     int
	buffered int // samples in the FIFOs
	inflight int // samples in requests and held batches
	rr       int // where the next round-robin scan starts
	// Every BatchSendDeadline a new flush epoch starts, and whatever
	// arrived before it is due, as a queue's shards drain on their ticker:
	// a sample waits at most one deadline, and the tenants' partial
	// batches go out together.
	epoch     uint64
	nextFlush time.Time
	lastSweep time.Time
	scratch   tenantScratch
	// names, when metadata is sent, records each tenant's metric names
	// (tenant_metadata.go); nil otherwise.
	names *nameTracker
}

type tenantScratch struct {
	marks   []uint32
	names   []uint32 // name marks, with q.names
	out     []model.Sample
	grouped []model.Sample
	offsets []int
}

// tenantState is one tenant's FIFO and sending state. Guarded by the
// queue's mu; pending belongs to the worker while busy.
type tenantState struct {
	id   uint32
	name string
	ring ring
	// pending is a batch to send again, after a recoverable failure.
	pending []model.Sample
	busy    bool // a worker is sending for the tenant
	retryAt time.Time
	attempt int // consecutive failures
	// prevWait is the last backoff of the sequence, which the next never undercuts.
	prevWait time.Duration
	// epoch is the queue's flush epoch when the oldest sample in ring
	// arrived (ring.n > 0): the sample is due at the next epoch.
	epoch uint64
	last  time.Time // last append or send
	m     tenantChildren
	names nameSet // metric names queued since the last metadata send, with q.names
}

func newTenantQueue(e EndpointConfig, logger *slog.Logger, m *metrics, tm *tenantMetrics, shutdownDropped *atomic.Int64) (*tenantQueue, error) {
	c, err := newClient(e)
	if err != nil {
		return nil, err
	}
	tc := e.Tenant.withDefaults()
	name, urlLabel := e.effectiveName(), redactURL(e.URL)
	q := &tenantQueue{
		name:            name,
		urlLabel:        urlLabel,
		cfg:             e.Queue,
		tcfg:            tc,
		client:          c,
		logger:          logger.With("remote_name", name, "url", urlLabel, "tenant_label", tc.Label),
		metrics:         m.forQueue(name, urlLabel),
		tm:              tm,
		limiter:         newLogLimiter(logInterval),
		now:             time.Now,
		notify:          make(chan struct{}, e.Queue.Shards),
		shutdownDropped: shutdownDropped,
		router:          newTenantRouter(tc),
	}
	return q, nil
}

// append routes samples to their tenants' FIFOs. It never blocks on
// sending; it holds the queue's lock for the routing (an array load per
// sample, see tenantRouter) and the copies.
func (q *tenantQueue) append(samples []model.Sample) {
	q.metrics.samplesIn.Add(float64(len(samples)))
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if now.Sub(q.lastSweep) >= sweepInterval {
		q.sweep(now)
	}
	r, sc := q.router, &q.scratch
	n := len(samples)
	if cap(sc.marks) < n {
		sc.marks = make([]uint32, n)
		sc.grouped = make([]model.Sample, n)
	}
	marks := sc.marks[:n]
	nt := q.names
	var names []uint32
	if nt != nil {
		if cap(sc.names) < n {
			sc.names = make([]uint32, n)
		}
		names = sc.names[:n]
	}
	src := samples
	if r.remove {
		if cap(sc.out) < n {
			sc.out = make([]model.Sample, n)
		}
		src = sc.out[:n]
		copy(src, samples)
	}
	for i := 0; i < n; {
		t := samples[i].Table
		lc := r.lineage(t, now)
		if nt != nil {
			nt.prepare(lc, t)
		}
		j := i
		for ; j < n && samples[j].Table == t; j++ {
			if nt != nil {
				names[j] = nt.nameOf(lc, t, samples[j].Ref)
			}
			m := r.tenantOf(lc, t, samples[j].Ref)
			if m == noTenant {
				m = r.missing
			} else if r.remove {
				src[j].Ref = r.strip(lc, t, samples[j].Ref)
				src[j].Table = nil // set below, from the shadow's snapshot
			}
			marks[j] = m
		}
		if r.remove && lc.shadow != nil {
			st := lc.shadow.Table()
			for k := i; k < j; k++ {
				if src[k].Table == nil {
					src[k].Table = st
				}
			}
		}
		i = j
	}

	// Group by tenant, stably (a series' samples keep their order).
	k := len(r.names) + tenantBase
	if cap(sc.offsets) < k+1 {
		sc.offsets = make([]int, k+1)
	}
	offsets := sc.offsets[:k+1]
	clear(offsets)
	for _, m := range marks {
		offsets[m+1]++
	}
	for i := 1; i <= k; i++ {
		offsets[i] += offsets[i-1]
	}
	grouped := sc.grouped[:n]
	next := offsets[:k]
	for i, m := range marks {
		grouped[next[m]] = src[i]
		next[m]++
	}
	wake := false
	start := 0
	for m := range k {
		end := next[m]
		if end == start {
			continue
		}
		part := grouped[start:end]
		start = end
		if m == noTenant {
			q.metrics.dropped.WithLabelValues(reasonNoTenant).Add(float64(len(part)))
			continue
		}
		ts := q.tenant(uint32(m-tenantBase), now)
		if ts == nil {
			q.metrics.dropped.WithLabelValues(reasonTenantLimit).Add(float64(len(part)))
			if ok, suppressed := q.limiter.allow(reasonTenantLimit); ok {
				q.logger.Warn("too many tenants; dropping the samples of a new one (raise tenant.max_tenants, or check the tenant label's values)",
					"tenant", r.names[m-tenantBase], "max_tenants", q.tcfg.MaxTenants, "samples", len(part), "similar_messages_suppressed", suppressed)
			}
			continue
		}
		if ts.ring.n == 0 {
			ts.epoch = q.epoch
		}
		ts.ring.push(part) // its max is the whole capacity: never drops here
		ts.last = now
		q.buffered += len(part)
		if ts.ring.n >= q.cfg.MaxSamplesPerSend {
			wake = true
		}
	}
	if nt != nil {
		q.noteNames(marks, names)
	}
	clear(grouped)
	if r.remove {
		clear(src)
	}
	q.enforceCapacity()
	if wake {
		for range cap(q.notify) {
			select {
			case q.notify <- struct{}{}:
			default:
			}
		}
	}
}

// tenant returns the state of tenant id, creating it unless MaxTenants
// are queued already (then nil).
func (q *tenantQueue) tenant(id uint32, now time.Time) *tenantState {
	if int(id) < len(q.tenants) && q.tenants[id] != nil {
		return q.tenants[id]
	}
	if q.live >= q.tcfg.MaxTenants {
		return nil
	}
	for int(id) >= len(q.tenants) {
		q.tenants = append(q.tenants, nil)
	}
	name := q.router.names[id]
	ts := &tenantState{id: id, name: name, ring: ring{max: q.cfg.Capacity}, last: now,
		m: q.tm.children(q.name, q.urlLabel, name)}
	q.tenants[id] = ts
	q.live++
	return ts
}

// enforceCapacity drops the oldest samples of the tenant holding the most
// until the FIFOs hold at most Capacity samples.
func (q *tenantQueue) enforceCapacity() {
	for q.buffered > q.cfg.Capacity {
		var big *tenantState
		for _, ts := range q.tenants {
			if ts != nil && (big == nil || ts.ring.n > big.ring.n) {
				big = ts
			}
		}
		k := min(q.buffered-q.cfg.Capacity, big.ring.n)
		big.ring.discard(k)
		q.buffered -= k
		q.metrics.droppedQueueFull.Add(float64(k))
		big.m.dropQueueFull.Add(float64(k))
		if ok, suppressed := q.limiter.allow(reasonQueueFull); ok {
			q.logger.Warn("remote-write queue full, dropping the oldest samples of the tenant holding the most; it is slow or backed off",
				"tenant", big.name, "dropped", k, "similar_messages_suppressed", suppressed)
		}
	}
}

// sweep forgets tenants that have had nothing to send for IdleTimeout and
// lineage caches unused as long, and compacts tenant IDs when forgotten
// names dominate.
func (q *tenantQueue) sweep(now time.Time) {
	q.lastSweep = now
	cutoff := now.Add(-q.tcfg.IdleTimeout)
	for i, ts := range q.tenants {
		if ts != nil && ts.ring.n == 0 && len(ts.ring.buf) > 4*q.cfg.MaxSamplesPerSend {
			// A burst is over: do not keep its array. Here, not at every
			// send: a tenant that empties every epoch would reallocate it.
			ts.ring.buf, ts.ring.head = nil, 0
		}
		if ts == nil || ts.busy || ts.ring.n > 0 || len(ts.pending) > 0 || !ts.last.Before(cutoff) {
			continue
		}
		q.tenants[i] = nil
		q.live--
		q.tm.forget(q.name, q.urlLabel, ts.name)
	}
	q.router.sweep(cutoff)
	if !q.router.needsCompaction(q.live, q.tcfg.MaxTenants) {
		return
	}
	remap := q.router.compact(func(old uint32) bool {
		return int(old) < len(q.tenants) && q.tenants[old] != nil
	}, q.tcfg.Default, q.tcfg.Missing == MissingDefault)
	tenants := make([]*tenantState, len(q.router.names))
	for old, id := range remap {
		ts := q.tenants[old]
		ts.id = id
		tenants[id] = ts
	}
	q.tenants = tenants
}

// next picks a tenant that is due, marks it busy and returns it; or says how
// long to wait, or (done) that there is nothing left to flush.
func (q *tenantQueue) next(flushing bool) (ts *tenantState, wait time.Duration, done bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	if !now.Before(q.nextFlush) {
		q.epoch++
		q.nextFlush = now.Add(q.cfg.BatchSendDeadline)
	}
	wait = q.nextFlush.Sub(now)
	left := false
	n := len(q.tenants)
	for k := range n {
		i := (q.rr + k) % n
		t := q.tenants[i]
		if t == nil || t.busy || (t.ring.n == 0 && len(t.pending) == 0) {
			continue
		}
		left = true
		if now.Before(t.retryAt) {
			wait = min(wait, t.retryAt.Sub(now))
			continue
		}
		if len(t.pending) == 0 && !flushing && t.ring.n < q.cfg.MaxSamplesPerSend && t.epoch == q.epoch {
			continue // due at the next epoch, which wait ends at
		}
		q.rr = i + 1
		t.busy = true
		return t, 0, false
	}
	return nil, wait, flushing && !left
}

// dropAll gives up on everything not being sent (the shutdown timeout
// passed).
func (q *tenantQueue) dropAll() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, t := range q.tenants {
		if t == nil || t.busy {
			continue
		}
		k := t.ring.n + len(t.pending)
		t.ring.reset()
		q.buffered -= k - len(t.pending)
		q.inflight -= len(t.pending)
		clear(t.pending)
		t.pending = nil
		if k > 0 {
			t.m.dropShutdown.Add(float64(k))
			q.dropShutdown(k)
		}
	}
}

func (q *tenantQueue) dropShutdown(n int) {
	if n > 0 {
		q.metrics.droppedShutdown.Add(float64(n))
		q.shutdownDropped.Add(int64(n))
	}
}

func (q *tenantQueue) noteSent(t int64) {
	for {
		cur := q.highestSent.Load()
		if t <= cur || q.highestSent.CompareAndSwap(cur, t) {
			return
		}
	}
}

// length is the samples held: buffered plus being sent or held for a retry.
func (q *tenantQueue) length() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.buffered + q.inflight
}

func (q *tenantQueue) liveTenants() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.live
}

type tenantSnapshot struct {
	name      string
	length    int
	backedOff bool
}

// snapshot reports each tenant's queue, for the gauges.
func (q *tenantQueue) snapshot() []tenantSnapshot {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	out := make([]tenantSnapshot, 0, q.live)
	for _, t := range q.tenants {
		if t != nil {
			out = append(out, tenantSnapshot{name: t.name, length: t.ring.n + len(t.pending), backedOff: now.Before(t.retryAt)})
		}
	}
	return out
}
