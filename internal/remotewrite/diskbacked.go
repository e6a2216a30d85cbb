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
// Direct mode: while nothing is backlogged on disk (the receiver keeps up),
// a shard's request is appended with AppendKeep, which hands its encoded
// buffer to the queue: the reader takes it from memory, in its place in
// the order, instead of reading it back from disk (no read, CRC or copy),
// and the shard's encoder goes on in a spare buffer. The record is on disk
// all the same and finished with Done as any other, so a restart re-sends
// it only if its delivery had not finished. Once a request goes to disk
// only (a sender is retrying: the receiver is down or failing, or the
// kept requests reached diskqueue.Options.KeepBytes) the queue is in
// backlog mode: every request is read back from disk, in order, until the
// reader has caught up with the writer; only then are requests kept
// again. Order does not depend on the mode: one reader hands out every
// record in append order, from memory or from disk, and a lane sends its
// records one after the other.
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

	// free holds request buffers for reuse: sent payloads (read from
	// disk, or encoder buffers handed over in direct mode) come back here,
	// and the reader and the shards' encoders take them.
	free chan []byte

	fallbackSamples *prometheus.CounterVec // by reason
	openFailed      bool

	// pending counts records read and not yet finished, for the shutdown
	// wait.
	pending atomic.Int64
}

// diskItem is one record handed to a lane; its payload is in body (read
// from disk, or the encoder's buffer of a kept record), which the lane
// returns to the free list.
type diskItem struct {
	rec  diskqueue.Record
	body []byte
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
	// A buffer per shard (an encoder waiting for its next request) and one
	// for the reader: in steady state a request is sent well before its
	// shard's next one is encoded, so the buffers go round.
	d.free = make(chan []byte, len(q.shards)+1)
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
// stored false means the request must be sent from memory (counted): the
// disk refuses it and has nothing left to send first, or ctx was
// cancelled. kept means the queue took body (direct mode): the caller must
// not write into its array again.
func (d *diskBacked) store(ctx context.Context, key int, body []byte, n int, minT, maxT int64) (stored, kept bool) {
	q := d.q
	if d.dq == nil {
		d.fallbackSamples.WithLabelValues("open_failed").Add(float64(n))
		return false, false
	}
	h := diskqueue.Header{Samples: uint32(n), MinT: minT, MaxT: maxT, Key: uint64(key)}
	for {
		var err error
		if q.retrying.Load() == 0 {
			kept, err = d.dq.AppendKeep(h, body)
		} else {
			// A sender is retrying: the receiver is failing, this request
			// will wait; on disk only (backlog mode), not in memory.
			err = d.dq.Append(h, body)
		}
		if err == nil {
			return true, kept
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
			return false, false
		}
		if ok, suppressed := q.limiter.allow("disk_hold"); ok {
			r, s := d.dq.Len()
			q.logger.Error("disk queue refused a request; holding it in memory until the disk takes it or its backlog is sent (newer samples must not overtake the backlog; the relay goes on scraping)",
				"samples", n, "backlog_records", r, "backlog_samples", s, "err", err, "similar_messages_suppressed", suppressed)
		}
		if q.sleep(ctx, diskRetryWait) != nil {
			return false, false
		}
	}
}

// getBuf returns a request buffer from the free list, or nil.
func (d *diskBacked) getBuf() []byte {
	select {
	case b := <-d.free:
		return b
	default:
		return nil
	}
}

// putBuf returns a request buffer to the free list (dropped when full or
// larger than DefaultMaxRecordPool allows).
func (d *diskBacked) putBuf(b []byte) {
	if b == nil || cap(b) > 2*DefaultMaxRecordPool {
		return
	}
	select {
	case d.free <- b[:0]:
	default:
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
	var spare []byte // a buffer the reader got and did not use
	getBuf := func() []byte {
		if spare != nil {
			return spare
		}
		return d.getBuf()
	}
	for {
		// A record read from disk is read straight into the lane's buffer:
		// no copy, and no read buffer kept by the queue. A kept one (direct
		// mode) comes with its encoder buffer, and needs no read at all.
		rec, buf, err := d.dq.NextInto(ctx, getBuf)
		spare = nil
		if err != nil {
			d.putBuf(buf)
			return // ctx done or queue closed
		}
		body := buf
		if rec.Kept {
			spare, body = buf, rec.Payload
		}
		d.pending.Add(1)
		select {
		case d.lanes[rec.Key%uint64(len(d.lanes))] <- diskItem{rec: rec, body: body}:
		case <-ctx.Done():
			d.putBuf(body)
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
		d.putBuf(it.body)
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
