package remotewrite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

	"github.com/prometheus/client_golang/prometheus"
)

// Writer sends samples to one or more remote-write receivers. Each receiver
// has its own queue, so a slow or broken one never holds up another, nor the
// caller: Append only copies samples into bounded buffers.
type Writer struct {
	openLater       []func() // disk queues New left for Run to open (deferDiskOpen)
	queues          []*queue
	tenantQueues    []*tenantQueue // endpoints with tenant routing (tenant_queue.go)
	logger          *slog.Logger
	shutdownTimeout time.Duration

	scratch sync.Pool // *appendScratch

	started         atomic.Bool
	closed          atomic.Bool // Run's context is done: Append drops
	shutdownDropped atomic.Int64
}

// New builds a Writer for cfg, registering its metrics with reg (if not nil).
// A cfg that went through Config.Validate is used as it is; any other is
// validated first.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Writer, error) {
	if logger == nil {
		return nil, errors.New("remotewrite: nil logger")
	}
	if !cfg.validated {
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
	}
	w := &Writer{
		logger:          logger,
		shutdownTimeout: cfg.ShutdownTimeout,
	}
	w.scratch.New = func() any { return new(appendScratch) }
	m := newMetrics()
	tm := newTenantMetrics()
	for _, e := range cfg.Endpoints {
		e.Headers = maps.Clone(e.Headers)
		if e.Tenant.Enabled() {
			q, err := newTenantQueue(e, logger, m, tm, &w.shutdownDropped)
			if err != nil {
				return nil, fmt.Errorf("remote write endpoint %q: %w", e.effectiveName(), err)
			}
			w.tenantQueues = append(w.tenantQueues, q)
			continue
		}
		q, err := newQueue(e, logger, m, &w.shutdownDropped)
		if err != nil {
			return nil, fmt.Errorf("remote write endpoint %q: %w", e.effectiveName(), err)
		}
		if e.Queue.Dir != "" {
			fallback := m.diskFallback.MustCurryWith(prometheus.Labels{"remote_name": q.name, "url": q.urlLabel})
			if cfg.deferDiskOpen {
				// The endpoint's previous Writer (a reload) still holds the
				// directory: open it in Run, which starts after that one drained.
				w.openLater = append(w.openLater, func() {
					var err error
					if q.disk, err = openDisk(q, e, logger, reg, fallback); err != nil {
						q.logger.Error("disk queue cannot be opened after a reload; this endpoint buffers in memory only until restart", "err", err)
						q.disk = &diskBacked{q: q, fallbackSamples: fallback, openFailed: true}
					}
				})
			} else if q.disk, err = openDisk(q, e, logger, reg, fallback); err != nil {
				w.closeDisks()
				return nil, fmt.Errorf("remote write endpoint %q: %w", e.effectiveName(), err)
			}
		}
		w.queues = append(w.queues, q)
	}
	m.queues, m.tenantQueues, tm.queues = w.queues, w.tenantQueues, w.tenantQueues
	if reg != nil {
		if err := m.register(reg); err != nil {
			return nil, fmt.Errorf("remotewrite: registering metrics: %w", err)
		}
		if len(w.tenantQueues) > 0 {
			if err := tm.register(reg); err != nil {
				return nil, fmt.Errorf("remotewrite: registering tenant metrics: %w", err)
			}
		}
	}
	return w, nil
}

// Append queues samples for every endpoint. It never blocks: when an
// endpoint's queue is full its oldest samples are dropped (and counted). It
// copies the samples it keeps, so the caller may reuse the slice. Every
// model.Sample's Table must be non-nil and hold its Ref. Safe for concurrent use.
func (w *Writer) Append(samples []model.Sample) {
	if len(samples) == 0 || len(w.queues)+len(w.tenantQueues) == 0 {
		return
	}
	if w.closed.Load() {
		for _, q := range w.queues {
			q.metrics.samplesIn.Add(float64(len(samples)))
			q.dropShutdown(len(samples))
		}
		for _, q := range w.tenantQueues {
			q.metrics.samplesIn.Add(float64(len(samples)))
			q.dropShutdown(len(samples))
		}
		return
	}
	for _, q := range w.tenantQueues {
		q.append(samples)
	}
	sc := w.scratch.Get().(*appendScratch)
	for _, q := range w.queues {
		q.append(samples, sc)
	}
	w.scratch.Put(sc)
}

// Run sends queued samples until ctx is cancelled. Then it stops accepting
// samples, keeps sending what it holds for at most Config.ShutdownTimeout,
// and returns. The error says how many samples were given up, if any were.
// Run may be called once.
func (w *Writer) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("remotewrite: Run called more than once")
	}
	for _, open := range w.openLater {
		open()
	}
	// Requests outlive ctx during the flush; sendCtx ends them when the
	// shutdown timeout passes.
	sendCtx, cancelSend := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSend()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, q := range w.queues {
		for _, s := range q.shards {
			wg.Go(func() { s.run(sendCtx, stop) })
		}
	}
	// The disk senders outlive the shards: the shards' flush appends to the
	// disk, which is then sent until drained, the receiver fails, or the
	// shutdown timeout passes; the rest stays on disk for the next start.
	diskCtx, cancelDisk := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDisk()
	// timeoutCtx ends the disk senders' requests under way when the
	// shutdown timeout passes (diskCtx only stops new ones).
	timeoutCtx, cancelTimeout := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelTimeout()
	var diskWG sync.WaitGroup
	for _, q := range w.queues {
		if q.disk != nil && q.disk.dq != nil {
			diskWG.Go(func() { q.disk.run(diskCtx, timeoutCtx) })
		}
	}
	for _, q := range w.queues {
		q.logger.Info("remote write started", "shards", len(q.shards), "capacity", q.capacity(),
			"max_samples_per_send", q.cfg.MaxSamplesPerSend)
	}
	for _, q := range w.tenantQueues {
		for range q.cfg.Shards {
			tw := &tenantWorker{q: q}
			wg.Go(func() { tw.run(sendCtx, stop) })
		}
		q.logger.Info("remote write started, routing by tenant", "workers", q.cfg.Shards, "capacity", q.cfg.Capacity,
			"max_samples_per_send", q.cfg.MaxSamplesPerSend, "tenant_header", q.tcfg.Header)
	}

	<-ctx.Done()
	w.closed.Store(true)
	close(stop)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	timer := time.NewTimer(w.shutdownTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		cancelSend()
		<-done
	}
	go func() {
		select {
		case <-timer.C:
		case <-sendCtx.Done():
		}
		cancelTimeout()
	}()
	for _, q := range w.queues {
		if q.disk != nil && q.disk.dq != nil {
			q.disk.waitDrained(timeoutCtx)
		}
	}
	cancelDisk()
	diskWG.Wait()
	w.closeDisks()
	for _, q := range w.queues {
		q.logTotals()
	}
	if n := w.shutdownDropped.Load(); n > 0 {
		return fmt.Errorf("remotewrite: %d samples dropped at shutdown (not delivered within the %s shutdown timeout, or appended after stop)", n, w.shutdownTimeout)
	}
	w.logger.Info("remote write flushed and stopped")
	return nil
}
