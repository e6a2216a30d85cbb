package remotewrite

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// logInterval is the most often one cause of failure is logged per endpoint.
const logInterval = time.Minute

// queue is one endpoint's sending machinery: a fixed set of shards, each
// with a bounded ring of samples and one sending goroutine. All samples of a
// producer, hence of each of its series, map to the same shard
// (model.LabelTable.Key), and a shard sends one batch at a time and retries it
// until it succeeds or fails for good, so every series is delivered in the
// order it was appended. A slow endpoint only fills its own rings.
type queue struct {
	name     string
	urlLabel string // the URL without credentials or query
	cfg      QueueConfig
	client   *client
	logger   *slog.Logger
	metrics  *queueMetrics
	limiter  *logLimiter
	shards   []*shard

	highestSent atomic.Int64 // milliseconds; highest timestamp accepted

	// buffered is the samples in all shards' rings. The capacity is the
	// endpoint's, not split per shard: one busy target (always on one
	// shard) may use what idle shards do not (issue 11).
	buffered atomic.Int64
	// retrying counts senders waiting to retry a failed request; >0 means
	// the receiver is failing now.
	retrying atomic.Int32
	// disk is the on-disk queue when Queue.Dir is set, else nil.
	disk *diskBacked

	// sleep waits between retries; tests replace it to observe the waits.
	sleep func(ctx context.Context, d time.Duration) error
	// shutdownDropped counts samples given up at shutdown, for Run's error.
	shutdownDropped *atomic.Int64
}

func newQueue(e EndpointConfig, logger *slog.Logger, m *metrics, shutdownDropped *atomic.Int64) (*queue, error) {
	c, err := newClient(e)
	if err != nil {
		return nil, err
	}
	name, urlLabel := e.effectiveName(), redactURL(e.URL)
	q := &queue{
		name:            name,
		urlLabel:        urlLabel,
		cfg:             e.Queue,
		client:          c,
		logger:          logger.With("remote_name", name, "url", urlLabel),
		metrics:         m.forQueue(name, urlLabel),
		limiter:         newLogLimiter(logInterval),
		sleep:           sleepContext,
		shutdownDropped: shutdownDropped,
	}
	perShard := e.Queue.Capacity / e.Queue.Shards
	q.shards = make([]*shard, e.Queue.Shards)
	for i := range q.shards {
		q.shards[i] = &shard{
			q:      q,
			index:  i,
			ring:   ring{max: e.Queue.Capacity, keep: max(perShard, minRingSize)},
			notify: make(chan struct{}, 1),
			batch:  make([]model.Sample, 0, min(e.Queue.MaxSamplesPerSend, e.Queue.Capacity)),
		}
		q.shards[i].batchSize = cap(q.shards[i].batch)
	}
	return q, nil
}

// appendScratch is reused between Append calls to group samples by shard.
type appendScratch struct {
	shardOf []uint16
	grouped []model.Sample
	offsets []int
}

// append queues samples, grouping them by shard so that each shard's lock is
// taken once per call and its samples land with one or two copies.
func (q *queue) append(samples []model.Sample, sc *appendScratch) {
	q.metrics.samplesIn.Add(float64(len(samples)))
	n := len(q.shards)
	if n == 1 {
		q.shards[0].push(samples)
		return
	}
	if cap(sc.shardOf) < len(samples) {
		sc.shardOf = make([]uint16, len(samples))
		sc.grouped = make([]model.Sample, len(samples))
	}
	shardOf, grouped := sc.shardOf[:len(samples)], sc.grouped[:len(samples)]
	if cap(sc.offsets) < n+1 {
		sc.offsets = make([]int, n+1)
	}
	offsets := sc.offsets[:n+1]
	clear(offsets)
	for i := range samples {
		k := uint16(samples[i].Table.Key % uint64(n))
		shardOf[i] = k
		offsets[k+1]++
	}
	for k := 1; k <= n; k++ {
		offsets[k] += offsets[k-1]
	}
	// Counting sort, stable: a series' samples keep their order.
	next := offsets[:n]
	for i := range samples {
		k := shardOf[i]
		grouped[next[k]] = samples[i]
		next[k]++
	}
	// next[k] is now the end of shard k's run, and the start of k+1's.
	start := 0
	for k, s := range q.shards {
		if end := next[k]; end > start {
			s.push(grouped[start:end])
			start = end
		}
	}
	clear(grouped) // do not keep tables alive from a pooled buffer
}

// length is the samples held: buffered plus being sent.
func (q *queue) length() int {
	n := 0
	for _, s := range q.shards {
		s.mu.Lock()
		n += s.ring.n + s.inflight
		s.mu.Unlock()
	}
	return n
}

func (q *queue) capacity() int { return q.cfg.Capacity }

// evict drops the oldest samples of the fullest shards until the endpoint is
// back within its capacity. Dropping a shard's oldest keeps every series'
// remaining samples in order.
func (q *queue) evict() (dropped int) {
	for {
		over := int(q.buffered.Load()) - q.cfg.Capacity
		if over <= 0 {
			return dropped
		}
		var fullest *shard
		most := 0
		for _, s := range q.shards {
			s.mu.Lock()
			n := s.ring.n
			s.mu.Unlock()
			if n > most {
				fullest, most = s, n
			}
		}
		if fullest == nil {
			return dropped
		}
		fullest.mu.Lock()
		k := min(over, fullest.ring.n)
		fullest.ring.discard(k)
		fullest.mu.Unlock()
		q.buffered.Add(-int64(k))
		dropped += k
	}
}

// dropShutdown counts samples given up because of shutdown.
func (q *queue) dropShutdown(n int) {
	if n > 0 {
		q.metrics.droppedShutdown.Add(float64(n))
		q.shutdownDropped.Add(int64(n))
	}
}

// shard owns a ring of pending samples and sends them in batches.
type shard struct {
	q      *queue
	index  int
	notify chan struct{} // a full batch is waiting; capacity 1
	// batchSize is cap(batch), for push: batch itself belongs to the
	// sending goroutine (reading it from push was a data race).
	batchSize int

	mu       sync.Mutex
	ring     ring
	inflight int  // samples in the batch being sent
	closed   bool // flushed at shutdown; later samples are dropped

	// Owned by the sending goroutine.
	batch []model.Sample
	enc   encoder
	// handedOver is the size of the encoder buffer the disk queue took
	// with the last request (direct mode), 0 if none: the next request
	// is encoded into a free one.
	handedOver int
}

// push queues samples, dropping the oldest ones when the ring is full. It
// never blocks on sending.
func (s *shard) push(samples []model.Sample) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.q.dropShutdown(len(samples))
		return
	}
	dropped := s.ring.push(samples)
	full := s.ring.n >= s.batchSize
	s.mu.Unlock()
	s.q.buffered.Add(int64(len(samples) - dropped))
	dropped += s.q.evict()
	if dropped > 0 {
		s.q.metrics.droppedQueueFull.Add(float64(dropped))
		if ok, suppressed := s.q.limiter.allow(reasonQueueFull); ok {
			s.q.logger.Warn("remote-write queue full, dropping the oldest samples; the endpoint is slow or down",
				"dropped", dropped, "similar_messages_suppressed", suppressed)
		}
	}
	if full {
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

// take moves up to one batch of samples from the ring to s.batch. With
// fullOnly it takes nothing unless a whole batch is waiting.
func (s *shard) take(fullOnly bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fullOnly && s.ring.n < cap(s.batch) {
		return 0
	}
	s.batch = s.batch[:s.ring.pop(s.batch[:cap(s.batch)])]
	s.inflight = len(s.batch)
	s.q.buffered.Add(-int64(len(s.batch)))
	return len(s.batch)
}

// run sends batches until stop is closed, then flushes. A batch goes out as
// soon as it is full, and whatever is pending goes out every
// BatchSendDeadline. sendCtx is cancelled only when the shutdown timeout has
// passed.
func (s *shard) run(sendCtx context.Context, stop <-chan struct{}) {
	deadline := time.NewTimer(s.q.cfg.BatchSendDeadline)
	defer deadline.Stop()
	// drain sends batches while there are any; under sustained load that
	// could be forever, so it gives way to stop.
	drain := func(fullOnly bool) {
		for s.take(fullOnly) > 0 {
			s.sendBatch(sendCtx)
			select {
			case <-stop:
				return
			default:
			}
		}
	}
	for {
		select {
		case <-stop:
			s.flush(sendCtx)
			return
		case <-s.notify:
			drain(true)
		case <-deadline.C:
			drain(false)
			deadline.Reset(s.q.cfg.BatchSendDeadline)
		}
	}
}

// flush sends everything pending until the ring is empty or sendCtx is
// cancelled, then closes the shard.
func (s *shard) flush(sendCtx context.Context) {
	for {
		s.mu.Lock()
		if s.ring.n == 0 || sendCtx.Err() != nil {
			left := s.ring.n
			s.ring.reset()
			s.q.buffered.Add(-int64(left))
			s.closed = true
			s.mu.Unlock()
			s.q.dropShutdown(left)
			return
		}
		s.mu.Unlock()
		if s.take(false) > 0 {
			s.sendBatch(sendCtx)
		}
	}
}

// sendBatch sends s.batch, retrying recoverable failures with backoff until
// it is delivered, fails for good, or sendCtx is cancelled. Retrying here,
// rather than putting the batch back, is what keeps each series in order.
func (s *shard) sendBatch(sendCtx context.Context) {
	q := s.q
	defer func() {
		s.mu.Lock()
		s.inflight = 0
		s.mu.Unlock()
		clear(s.batch) // do not keep tables alive
		s.batch = s.batch[:0]
	}()
	if s.handedOver > 0 {
		// Taken only now, not when the last one was handed over: by now
		// that one has usually been sent and is free again, so a shard
		// needs no second buffer.
		s.enc.out = q.disk.getBuf()
		if s.enc.out == nil {
			s.enc.out = make([]byte, s.handedOver)
		}
		s.enc.out = s.enc.out[:cap(s.enc.out)]
		s.handedOver = 0
	}
	body, n, invalid := s.enc.encode(s.batch)
	if invalid > 0 {
		q.metrics.droppedInvalid.Add(float64(invalid))
		if ok, suppressed := q.limiter.allow(reasonInvalidSeries); ok {
			q.logger.Error("dropping samples of malformed series (labels unsorted, duplicate or empty, or no __name__)",
				"samples", invalid, "similar_messages_suppressed", suppressed)
		}
	}
	if n == 0 {
		return
	}
	minT, maxT := s.batch[0].T, s.batch[0].T
	for i := range s.batch {
		minT, maxT = min(minT, s.batch[i].T), max(maxT, s.batch[i].T)
	}
	// With a disk queue the batch is stored and sent by the disk's senders;
	// only when the disk refuses it is it sent from memory, as without one.
	if q.disk != nil {
		stored, kept := q.disk.store(sendCtx, s.index, body, n, minT, maxT)
		if kept {
			// The queue took the encoder's buffer (direct mode): the next
			// request goes into a free one, sized alike when none is.
			s.handedOver = len(s.enc.out)
			s.enc.out = nil
		}
		if stored {
			return
		}
	}
	if sendCtx.Err() != nil {
		q.dropShutdown(n)
		return
	}
	if q.deliver(sendCtx, body, n, maxT, s.batch) == deliverCancelled {
		q.dropShutdown(n)
	}
}

// ring is a FIFO of samples with a fixed maximum length. It holds model.Sample
// values, not pointers, so buffering costs 32 bytes a sample and no
// allocation; its array grows on demand up to max, so an idle endpoint does
// not reserve its whole capacity.
type ring struct {
	buf     []model.Sample
	head, n int
	max     int
	// keep is the array size kept when the ring empties; a larger array
	// (grown by a burst beyond the shard's share) is released, so that the
	// shards' arrays stay near the endpoint's capacity in total.
	keep int
}

const minRingSize = 256

// push appends samples, discarding the oldest ones to stay within max, and
// returns how many were discarded (old or new).
func (r *ring) push(samples []model.Sample) (dropped int) {
	if len(samples) > r.max {
		dropped = len(samples) - r.max
		samples = samples[dropped:]
	}
	if over := r.n + len(samples) - r.max; over > 0 {
		r.discard(over)
		dropped += over
	}
	if r.n+len(samples) > len(r.buf) {
		r.grow(r.n + len(samples))
	}
	tail := r.head + r.n
	if tail >= len(r.buf) {
		tail -= len(r.buf)
	}
	// The free space starts at tail and may wrap; it is large enough.
	k := copy(r.buf[tail:], samples)
	copy(r.buf, samples[k:])
	r.n += len(samples)
	return dropped
}

// pop moves up to len(dst) of the oldest samples to dst.
func (r *ring) pop(dst []model.Sample) int {
	k := min(len(dst), r.n)
	first := min(k, len(r.buf)-r.head)
	copy(dst, r.buf[r.head:r.head+first])
	copy(dst[first:k], r.buf[:k-first])
	r.discard(k)
	return k
}

// discard removes the k oldest samples.
func (r *ring) discard(k int) {
	first := min(k, len(r.buf)-r.head)
	clear(r.buf[r.head : r.head+first]) // release the tables for GC
	clear(r.buf[:k-first])
	r.head += k
	if r.head >= len(r.buf) {
		r.head -= len(r.buf)
	}
	r.n -= k
	if r.n == 0 {
		r.head = 0
		if r.keep > 0 && len(r.buf) > r.keep {
			r.buf = nil
		}
	}
}

func (r *ring) reset() { r.discard(r.n) }

// grow makes room for need samples, doubling to amortise copies.
func (r *ring) grow(need int) {
	size := min(max(need, 2*len(r.buf), minRingSize), r.max)
	buf := make([]model.Sample, size)
	first := copy(buf, r.buf[r.head:min(r.head+r.n, len(r.buf))])
	copy(buf[first:r.n], r.buf[:r.n-first])
	r.buf, r.head = buf, 0
}

// logLimiter lets each cause of a log message through at most once per
// interval, counting what it held back, so that a broken endpoint does not
// flood the log with one line per request.
type logLimiter struct {
	interval time.Duration
	now      func() time.Time

	mu    sync.Mutex
	state map[string]*limiterState
}

type limiterState struct {
	last       time.Time
	suppressed int
}

func newLogLimiter(interval time.Duration) *logLimiter {
	return &logLimiter{interval: interval, now: time.Now, state: map[string]*limiterState{}}
}

// allow reports whether a message for cause may be logged now, and how many
// were suppressed since the last one.
func (l *logLimiter) allow(cause string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	st := l.state[cause]
	if st == nil {
		l.state[cause] = &limiterState{last: now}
		return true, 0
	}
	if now.Sub(st.last) < l.interval {
		st.suppressed++
		return false, 0
	}
	n := st.suppressed
	st.last, st.suppressed = now, 0
	return true, n
}
