package remotewrite

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/diskqueue"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// diskBacked is an endpoint's on-disk queue (Queue.Dir set). Every encoded
// request of the endpoint is appended to it by the shards and read back in
// order by one reader, which hands each record to the sender lane of the
// shard that wrote it: a series always maps to one shard, so its requests
// are sent one after the other, the backlog before newer samples, also
// across restarts. Lanes send in parallel and report each record finished
// (Queue.Done); the queue acknowledges the finished prefix and keeps the
// records finished beyond it in its checkpoint, so that a restart re-sends
// only records whose delivery had not finished: re-sending a delivered one
// after newer samples of its series would be rejected as out of order.
// At a graceful stop a request under way is not abandoned (the receiver
// might accept it after the sender gave up, and the restart would send it
// again) but answered, up to the shutdown timeout.
//
// When the disk refuses a record (full, read-only, directory removed, I/O
// error) the shard holds it (its ring goes on buffering, bounded by the
// queue capacity) and tries the disk again, until either the disk takes it
// or the disk's backlog has been sent; then it sends the request from
// memory as without a disk queue. Sending it earlier would put newer
// samples before the backlog, which the receiver rejects as out of order.
// The relay keeps scraping throughout; the failure is logged and counted.
type diskBacked struct {
	q     *queue
	dq    *diskqueue.Queue
	lanes []chan diskItem

	bufs sync.Pool // *[]byte, payload copies

	fallbackSamples *prometheus.CounterVec // by reason
	openFailed      bool

	// pending counts records read and not yet finished, for the shutdown
	// wait.
	pending atomic.Int64
}

// diskItem is one record handed to a lane; its payload was read into
// body, a pooled buffer the lane returns.
type diskItem struct {
	rec  diskqueue.Record
	body *[]byte
}

// laneDepth is how many records may wait for each lane: enough to keep a
// lane busy, small enough that payload copies stay a few MB.
const laneDepth = 2

// QueueSubdir is the sub-directory of Queue.Dir holding one endpoint's disk
// queue: its name, made safe for a file name (a name that had to be changed
// gets a hash suffix so that two names cannot collide).
func QueueSubdir(name string) string {
	safe := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, name)
	if safe == name && safe != "." && safe != ".." && len(safe) <= 100 {
		return safe
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	if len(safe) > 100 {
		safe = safe[:100]
	}
	return fmt.Sprintf("%s-%08x", safe, h.Sum32())
}

// openDisk opens q's disk queue. A disk that cannot be written at start
// (read-only volume, permissions) leaves the endpoint on the memory queue,
// logged and counted; a directory locked by another process is an error.
func openDisk(q *queue, e EndpointConfig, logger *slog.Logger, reg prometheus.Registerer, fallback *prometheus.CounterVec) (*diskBacked, error) {
	d := &diskBacked{q: q, fallbackSamples: fallback}
	dir := filepath.Join(e.Queue.Dir, QueueSubdir(q.name))
	dq, err := diskqueue.Open(diskqueue.Options{
		Dir: dir, Name: q.name, MaxBytes: e.Queue.MaxBytes, SyncInterval: e.Queue.SyncInterval,
	}, logger, reg)
	switch {
	case errors.Is(err, diskqueue.ErrUnavailable):
		q.logger.Error("disk queue cannot be opened; this endpoint buffers in memory only until restart",
			"dir", dir, "err", err)
		d.openFailed = true
		return d, nil
	case err != nil:
		return nil, fmt.Errorf("disk queue %s: %w", dir, err)
	}
	d.dq = dq
	d.lanes = make([]chan diskItem, len(q.shards))
	for i := range d.lanes {
		d.lanes[i] = make(chan diskItem, laneDepth)
	}
	r, s := dq.Len()
	q.logger.Info("disk queue opened", "dir", dir, "backlog_records", r, "backlog_samples", s)
	return d, nil
}

// diskRetryWait is how long a shard whose request the disk refused waits
// before trying the disk again (the queue itself fails fast for its
// RetryInterval after a failure).
var diskRetryWait = time.Second

// store appends one encoded request to the disk. While the disk refuses it
// and still holds a backlog, store waits and retries (see diskBacked).
// false means the request must be sent from memory (counted): the disk
// refuses it and has nothing left to send first, or ctx was cancelled.
func (d *diskBacked) store(ctx context.Context, key int, body []byte, n int, minT, maxT int64) bool {
	q := d.q
	if d.dq == nil {
		d.fallbackSamples.WithLabelValues("open_failed").Add(float64(n))
		return false
	}
	for {
		err := d.dq.Append(diskqueue.Header{Samples: uint32(n), MinT: minT, MaxT: maxT, Key: uint64(key)}, body)
		if err == nil {
			return true
		}
		reason := "unavailable"
		switch {
		case errors.Is(err, diskqueue.ErrTooLarge):
			reason = "too_large"
		case errors.Is(err, diskqueue.ErrClosed):
			reason = "closed"
		}
		if d.drained() || reason != "unavailable" {
			d.fallbackSamples.WithLabelValues(reason).Add(float64(n))
			if ok, suppressed := q.limiter.allow("disk_" + reason); ok {
				q.logger.Error("disk queue refused a request and has no backlog; sending it from memory (the relay goes on scraping)",
					"reason", reason, "samples", n, "err", err, "similar_messages_suppressed", suppressed)
			}
			return false
		}
		if ok, suppressed := q.limiter.allow("disk_hold"); ok {
			r, s := d.dq.Len()
			q.logger.Error("disk queue refused a request; holding it in memory until the disk takes it or its backlog is sent (newer samples must not overtake the backlog; the relay goes on scraping)",
				"samples", n, "backlog_records", r, "backlog_samples", s, "err", err, "similar_messages_suppressed", suppressed)
		}
		if q.sleep(ctx, diskRetryWait) != nil {
			return false
		}
	}
}

// run reads records in order and feeds the lanes until ctx is done. A
// request under way when ctx is done is still answered; reqCtx (the
// shutdown timeout) abandons it.
func (d *diskBacked) run(ctx, reqCtx context.Context) {
	var wg sync.WaitGroup
	for _, lane := range d.lanes {
		wg.Go(func() { d.send(ctx, reqCtx, lane) })
	}
	defer func() {
		for _, lane := range d.lanes {
			close(lane)
		}
		wg.Wait()
	}()
	for {
		bp, _ := d.bufs.Get().(*[]byte)
		if bp == nil {
			bp = new([]byte)
		}
		// Read straight into the lane's buffer: no copy, and no read
		// buffer kept by the queue.
		rec, buf, err := d.dq.NextInto(ctx, *bp)
		*bp = buf
		if err != nil {
			return // ctx done or queue closed
		}
		d.pending.Add(1)
		select {
		case d.lanes[rec.Key%uint64(len(d.lanes))] <- diskItem{rec: rec, body: bp}:
		case <-ctx.Done():
			return
		}
	}
}

// send delivers a lane's records one at a time. A record whose delivery is
// cancelled (shutdown) is not finished: it is sent after the restart. Once
// ctx is done no request is started or retried, but the one under way is
// answered (unless reqCtx ends it): a request abandoned while the receiver
// processes it may be accepted all the same, and re-sent after the restart.
func (d *diskBacked) send(ctx, reqCtx context.Context, lane <-chan diskItem) {
	for it := range lane {
		if ctx.Err() == nil {
			if d.q.deliverUntil(ctx, reqCtx, it.rec.Payload, int(it.rec.Samples), it.rec.MaxT, nil) != deliverCancelled {
				d.dq.Done(it.rec)
			}
		}
		d.pending.Add(-1)
		it.rec.Payload = nil
		if cap(*it.body) <= 2*DefaultMaxRecordPool {
			d.bufs.Put(it.body)
		}
	}
}

// DefaultMaxRecordPool is the largest payload buffer kept for reuse; a
// 10,000-sample request is about 0.4 MB.
const DefaultMaxRecordPool = 1 << 20

// drained reports whether nothing is left on disk or in flight.
func (d *diskBacked) drained() bool {
	r, _ := d.dq.Len()
	return r == 0 && d.pending.Load() == 0
}

// waitDrained waits until the disk is drained, the receiver is failing (no
// point waiting for it), or ctx is done.
func (d *diskBacked) waitDrained(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !d.drained() && d.q.retrying.Load() == 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// closeDisks syncs and closes the endpoints' disk queues, logging what is
// left on disk for the next start.
func (w *Writer) closeDisks() {
	for _, q := range w.queues {
		if q.disk == nil || q.disk.dq == nil {
			continue
		}
		r, s := q.disk.dq.Len()
		if err := q.disk.dq.Close(); err != nil {
			q.logger.Error("disk queue close failed; the last fsync interval of data may be lost on a crash", "err", err)
		}
		q.logger.Info("disk queue closed", "backlog_records", r, "backlog_samples", s)
	}
}

// Defaults of the disk queue settings, for the flags.
const (
	// DefaultQueueMaxBytes is 1 GiB per endpoint: about 10 minutes at 40k
	// samples/s at the ~45 bytes a sample the 10,000-sample requests take
	// on disk (the 50-node load profile makes ~10k samples/s).
	DefaultQueueMaxBytes = diskqueue.DefaultMaxBytes
	// DefaultQueueSyncInterval bounds what an OS crash loses.
	DefaultQueueSyncInterval = diskqueue.DefaultSyncInterval
)

// logTotals logs the endpoint's lifetime counts at shutdown, so that an
// operator (and the end-to-end tests) can account for every sample of a
// run: in = sent + dropped + left on disk (+ rejected for good).
func (q *queue) logTotals() {
	var backlog int64
	if q.disk != nil && q.disk.dq != nil {
		_, backlog = q.disk.dq.Len()
	}
	q.logger.Info("remote write endpoint stopped",
		"samples_in", q.counterValue(q.metrics.samplesIn), "samples_sent", q.counterValue(q.metrics.samplesSent),
		"samples_dropped", q.counterValue(q.metrics.dropped), "disk_backlog_samples", backlog)
}

// counterValue reads a counter, or sums the children of a vector that
// belong to this endpoint (a curried vector collects every endpoint's).
func (q *queue) counterValue(c prometheus.Collector) int64 {
	ch := make(chan prometheus.Metric, 16)
	go func() { c.Collect(ch); close(ch) }()
	var sum float64
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil || d.Counter == nil {
			continue
		}
		for _, l := range d.Label {
			if l.GetName() == "remote_name" && l.GetValue() == q.name {
				sum += d.Counter.GetValue()
			}
		}
	}
	return int64(sum)
}
