package remotewrite

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// Sending one encoded request: retries with a backoff that never shrinks, and
// what a failure costs (counted, logged with the batch's targets).

// deliverResult is how deliver ended.
type deliverResult int

const (
	deliverSent      deliverResult = iota
	deliverRejected                // failed for good; dropped and counted
	deliverCancelled               // ctx was cancelled; not counted here
)

// deliver POSTs one encoded request of n samples, retrying recoverable
// failures with backoff until it is delivered, fails for good, or ctx is
// cancelled. batch, if known (not for a request read back from disk), names
// the targets and first series in the log of a rejection.
func (q *queue) deliver(ctx context.Context, body []byte, n int, maxT int64, batch []model.Sample) deliverResult {
	return q.deliverUntil(ctx, ctx, body, n, maxT, batch)
}

// deliverUntil is deliver with the request itself under reqCtx: once ctx is
// done it neither retries nor sends again, but the request under way gets
// its answer unless reqCtx ends it too.
func (q *queue) deliverUntil(ctx, reqCtx context.Context, body []byte, n int, maxT int64, batch []model.Sample) deliverResult {
	var prev time.Duration
	defer func() {
		if prev > 0 {
			q.retrying.Add(-1)
		}
	}()
	for attempt := 0; ; attempt++ {
		start := time.Now()
		code, err := q.client.send(reqCtx, body)
		q.metrics.observeDuration(code, time.Since(start).Seconds())
		if err == nil {
			q.metrics.samplesSent.Add(float64(n))
			q.metrics.bytesSent.Add(float64(len(body)))
			q.noteSent(maxT)
			return deliverSent
		}
		if ctx.Err() != nil {
			return deliverCancelled
		}
		recoverable, retryAfter := isRecoverable(err)
		if !recoverable {
			reason := dropReason(err)
			q.metrics.samplesFailed.Add(float64(n))
			q.metrics.dropped.WithLabelValues(reason).Add(float64(n))
			if ok, suppressed := q.limiter.allow(reason); ok {
				targets, first := describeBatch(batch)
				q.logger.Error("remote-write endpoint rejected a batch; not retrying, samples dropped",
					"reason", reason, "samples", n, "err", err, "targets", targets, "first_series", first,
					"similar_messages_suppressed", suppressed)
			}
			return deliverRejected
		}
		q.metrics.samplesRetried.Add(float64(n))
		if prev == 0 {
			q.retrying.Add(1)
		}
		wait := backoff(q.cfg.MinBackoff, q.cfg.MaxBackoff, attempt, prev)
		prev = wait
		if retryAfter > 0 {
			// The receiver's word wins, even beyond MaxBackoff; it does not
			// feed the exponential sequence.
			wait = retryAfter
		}
		if ok, suppressed := q.limiter.allow("retry"); ok {
			q.logger.Warn("remote-write request failed, retrying",
				"samples", n, "attempt", attempt+1, "wait", wait, "err", err, "similar_messages_suppressed", suppressed)
		}
		if q.sleep(ctx, wait) != nil {
			return deliverCancelled
		}
	}
}

func (q *queue) noteSent(t int64) {
	for {
		cur := q.highestSent.Load()
		if t <= cur || q.highestSent.CompareAndSwap(cur, t) {
			return
		}
	}
}

// backoff returns the wait before retry number attempt+1: exponential from
// minB, capped at maxB, with "equal jitter" (half fixed, half random) so that
// shards and relays that failed together do not retry together, never below
// minB, and never below prev (the previous wait of the same request): jitter
// alone could otherwise make a wait half the one before it.
func backoff(minB, maxB time.Duration, attempt int, prev time.Duration) time.Duration {
	d := minB
	for i := 0; i < attempt && d < maxB; i++ {
		d *= 2
	}
	d = min(d, maxB)
	half := d / 2
	d = half + rand.N(d-half+1)
	return min(max(d, minB, prev), max(maxB, minB))
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
