package remotewrite

import (
	"context"
	"net/http"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// The tenant queues' workers: each takes the tenant that is due and sends
// one request of it, with that tenant's own backoff.

// tenantWorker sends requests for whichever tenant is due.
type tenantWorker struct {
	q   *tenantQueue
	enc encoder
	buf []model.Sample
}

func (w *tenantWorker) run(sendCtx context.Context, stop <-chan struct{}) {
	q := w.q
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	flushing := false
	for {
		if sendCtx.Err() != nil {
			q.dropAll()
			return
		}
		ts, wait, done := q.next(flushing)
		if ts != nil {
			w.send(sendCtx, ts)
			continue
		}
		if done {
			return
		}
		timer.Reset(wait)
		select {
		case <-stop:
			flushing, stop = true, nil
		case <-q.notify:
		case <-timer.C:
		case <-sendCtx.Done():
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// send makes one attempt at the tenant's next batch: its held one, or a new
// one from its FIFO.
func (w *tenantWorker) send(sendCtx context.Context, ts *tenantState) {
	q := w.q
	q.mu.Lock()
	batch := ts.pending
	ts.pending = nil
	fromBuf := len(batch) == 0
	if fromBuf {
		if cap(w.buf) < q.cfg.MaxSamplesPerSend {
			w.buf = make([]model.Sample, q.cfg.MaxSamplesPerSend)
		}
		k := ts.ring.pop(w.buf[:q.cfg.MaxSamplesPerSend])
		batch = w.buf[:k]
		q.buffered -= k
		q.inflight += k
		ts.epoch = q.epoch // what is left arrived meanwhile
	}
	q.mu.Unlock()

	body, n, invalid := w.enc.encode(batch)
	if invalid > 0 {
		q.metrics.droppedInvalid.Add(float64(invalid))
		ts.m.dropInvalid.Add(float64(invalid))
	}
	var (
		code int
		err  error
	)
	if n > 0 {
		start := time.Now()
		code, err = q.client.sendTenant(sendCtx, body, q.tcfg.Header, ts.name)
		q.metrics.observeDuration(code, time.Since(start).Seconds())
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	ts.busy = false
	ts.last = q.now()
	release := func() {
		q.inflight -= len(batch)
		clear(batch) // do not keep tables alive; a held batch's array goes with it
	}
	switch {
	case n == 0 || err == nil:
		if n > 0 {
			q.metrics.samplesSent.Add(float64(n))
			q.metrics.bytesSent.Add(float64(len(body)))
			ts.m.sent.Add(float64(n))
			ts.m.bytes.Add(float64(len(body)))
			if code == http.StatusAccepted {
				// Cortex's and Mimir's HA tracker: the other replica is
				// the elected one; accepted, not stored.
				ts.m.dedup.Add(float64(n))
			}
			var maxT int64
			for i := range batch {
				maxT = max(maxT, batch[i].T)
			}
			q.noteSent(maxT)
		}
		ts.attempt, ts.retryAt, ts.prevWait = 0, time.Time{}, 0
		release()
	case sendCtx.Err() != nil:
		ts.m.dropShutdown.Add(float64(n))
		q.dropShutdown(n)
		release()
	default:
		recoverable, retryAfter := isRecoverable(err)
		wait := backoff(q.cfg.MinBackoff, q.cfg.MaxBackoff, ts.attempt, ts.prevWait)
		ts.prevWait = wait
		if retryAfter > 0 {
			wait = retryAfter
		}
		ts.attempt++
		ts.retryAt = q.now().Add(wait)
		if recoverable {
			q.metrics.samplesRetried.Add(float64(n))
			ts.m.retried.Add(float64(n))
			if fromBuf {
				w.buf = nil // the tenant keeps the array
			}
			ts.pending = batch
			// One cause for all tenants: the limiter never forgets a cause.
			if ok, suppressed := q.limiter.allow("tenant_retry"); ok {
				q.logger.Warn("remote-write request failed; retrying this tenant's batch after a backoff, the other tenants keep sending",
					"tenant", ts.name, "samples", n, "attempt", ts.attempt, "wait", wait, "err", err, "similar_messages_suppressed", suppressed)
			}
			return
		}
		reason := dropReason(err)
		q.metrics.samplesFailed.Add(float64(n))
		q.metrics.dropped.WithLabelValues(reason).Add(float64(n))
		ts.m.dropped.WithLabelValues(reason).Add(float64(n))
		if ok, suppressed := q.limiter.allow(reason); ok {
			q.logger.Error("remote-write endpoint rejected a batch of this tenant; not retrying, samples dropped; the tenant backs off",
				"tenant", ts.name, "reason", reason, "samples", n, "wait", wait, "err", err, "similar_messages_suppressed", suppressed)
		}
		release()
	}
}
