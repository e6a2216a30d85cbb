package remotewrite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// Group is remote write that can be reconfigured while it runs (SIGHUP,
// /-/reload): one Writer per endpoint, so that Apply replaces only the
// endpoints whose settings changed. An unchanged endpoint keeps its Writer,
// its queue and its metrics. A changed one gets a new Writer that buffers
// from the moment of Apply but starts sending only when the old one has
// drained what it held (at most Config.ShutdownTimeout), so every series
// stays in order across the hand-over. A removed endpoint drains the same
// way.
//
// Group is a prometheus.Gatherer of its endpoints' metrics (each Writer
// registers in a registry of its own, which is what lets an endpoint come
// and go): serve it next to the main registry with prometheus.Gatherers.
type Group struct {
	logger          *slog.Logger
	shutdownTimeout time.Duration
	meta            *metadataMetrics
	own             *prometheus.Registry // the Group's own metrics

	cur atomic.Pointer[[]*member] // what Append feeds

	mu       sync.Mutex
	all      map[*member]struct{} // cur plus those still draining
	runCtx   context.Context      // nil until Run
	metaSrc  MetadataSource
	wg       sync.WaitGroup
	errMu    sync.Mutex
	drainErr []error
}

// member is one endpoint's Writer.
type member struct {
	cfg      EndpointConfig // Origin cleared: where it was written is no change
	name     string
	w        *Writer
	reg      *prometheus.Registry
	relabel  *relabeler
	cancel   context.CancelFunc
	done     chan struct{} // closed when its Writer has flushed and stopped
	draining atomic.Bool
}

// NewGroup builds a Group for cfg (validated here).
func NewGroup(cfg Config, logger *slog.Logger) (*Group, error) {
	if logger == nil {
		return nil, errors.New("remotewrite: nil logger")
	}
	g := &Group{logger: logger, meta: newMetadataMetrics(), own: prometheus.NewRegistry(), all: map[*member]struct{}{}}
	g.own.MustRegister(g.meta.sent, g.meta.failed, g.meta.deferred)
	if err := g.Apply(cfg); err != nil {
		return nil, err
	}
	return g, nil
}

// SetMetadataSource sets where metric metadata comes from for endpoints
// with metadata_config.send. Call it before Run.
func (g *Group) SetMetadataSource(src MetadataSource) {
	g.mu.Lock()
	g.metaSrc = src
	g.mu.Unlock()
}

// Enabled reports whether any endpoint is configured.
func (g *Group) Enabled() bool { return len(*g.cur.Load()) > 0 }

// Append queues samples for every endpoint, relabelled per endpoint. It
// never blocks (see Writer.Append).
func (g *Group) Append(samples []model.Sample) {
	for _, m := range *g.cur.Load() {
		if m.relabel == nil {
			m.w.Append(samples)
			continue
		}
		out := m.relabel.apply(samples)
		m.w.Append(*out)
		m.relabel.release(out)
	}
}

// Apply makes cfg the configuration. On error nothing changes.
func (g *Group) Apply(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.runCtx != nil && g.runCtx.Err() != nil {
		return errors.New("remotewrite: Apply after Run stopped")
	}
	var old []*member
	if p := g.cur.Load(); p != nil {
		old = *p
	}
	byName := map[string]*member{}
	for _, m := range old {
		byName[m.name] = m
	}
	next := make([]*member, 0, len(cfg.Endpoints))
	var fresh []*member
	keep := map[*member]bool{}
	for _, e := range cfg.Endpoints {
		e.Origin = Origin{}
		if m := byName[e.effectiveName()]; m != nil && reflect.DeepEqual(m.cfg, e) {
			next = append(next, m)
			keep[m] = true
			continue
		}
		m, err := g.newMember(e, cfg.ShutdownTimeout, byName[e.effectiveName()] != nil)
		if err != nil {
			return err
		}
		next = append(next, m)
		fresh = append(fresh, m)
	}
	g.shutdownTimeout = cfg.ShutdownTimeout
	g.cur.Store(&next)
	for _, m := range fresh {
		g.all[m] = struct{}{}
	}
	for _, m := range old {
		if keep[m] {
			continue
		}
		m.draining.Store(true)
		if m.cancel != nil {
			m.cancel() // its Run flushes, then closes done
		}
		g.logger.Info("remote write endpoint changed or removed; draining its queue", "remote_name", m.name)
	}
	if g.runCtx != nil {
		for _, m := range fresh {
			g.start(m, byName[m.name])
		}
	}
	return nil
}

// replaces says an endpoint of the same name runs: its disk queue, if any,
// is opened only once that one has drained (Group.start).
func (g *Group) newMember(e EndpointConfig, shutdownTimeout time.Duration, replaces bool) (*member, error) {
	reg := prometheus.NewRegistry()
	w, err := New(Config{Endpoints: []EndpointConfig{e}, ShutdownTimeout: shutdownTimeout, deferDiskOpen: replaces, validated: true}, g.logger, reg)
	if err != nil {
		return nil, err
	}
	m := &member{cfg: e, name: e.effectiveName(), w: w, reg: reg, done: make(chan struct{})}
	if e.Prom != nil && len(e.Prom.WriteRelabel) > 0 {
		m.relabel = newRelabeler(e.Prom.WriteRelabel)
	}
	return m, nil
}

// start runs m's Writer (after prev, the endpoint's previous Writer, has
// drained) and its metadata sender. g.mu is held.
func (g *Group) start(m *member, prev *member) {
	ctx, cancel := context.WithCancel(g.runCtx)
	m.cancel = cancel
	src := g.metaSrc
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(m.done)
		defer func() {
			g.mu.Lock()
			if m.draining.Load() {
				delete(g.all, m)
			}
			g.mu.Unlock()
		}()
		if prev != nil && prev.draining.Load() {
			select {
			case <-prev.done:
			case <-ctx.Done():
			}
		}
		var metaDone chan struct{}
		if p := m.cfg.Prom; p != nil && p.Metadata.Send && src != nil && ctx.Err() == nil && len(m.w.queues)+len(m.w.tenantQueues) > 0 {
			metaDone = make(chan struct{})
			go func() {
				defer close(metaDone)
				if len(m.w.tenantQueues) > 0 { // each tenant its own families (tenant_metadata.go)
					q := m.w.tenantQueues[0]
					sendTenantMetadata(ctx, q, p.Metadata, src, g.meta, q.logger)
					return
				}
				q := m.w.queues[0]
				sendMetadata(ctx, q.client, p.Metadata, src, g.meta, q.name, q.urlLabel, q.logger)
			}()
		}
		if err := m.w.Run(ctx); err != nil {
			g.errMu.Lock()
			g.drainErr = append(g.drainErr, fmt.Errorf("endpoint %q: %w", m.name, err))
			g.errMu.Unlock()
		}
		if metaDone != nil {
			<-metaDone
		}
	}()
}

// Run sends until ctx is cancelled, then flushes every endpoint (each for at
// most Config.ShutdownTimeout, concurrently) and returns what was given up.
func (g *Group) Run(ctx context.Context) error {
	g.mu.Lock()
	if g.runCtx != nil {
		g.mu.Unlock()
		return errors.New("remotewrite: Run called more than once")
	}
	g.runCtx = ctx
	// Endpoints replaced before Run still hold what was appended to them:
	// they run only to flush it, before their successors send.
	prev := map[string]*member{}
	for m := range g.all {
		if m.draining.Load() {
			g.start(m, nil)
			m.cancel()
			prev[m.name] = m
		}
	}
	for _, m := range *g.cur.Load() {
		g.start(m, prev[m.name])
	}
	g.mu.Unlock()
	<-ctx.Done()
	g.wg.Wait()
	g.errMu.Lock()
	defer g.errMu.Unlock()
	return errors.Join(g.drainErr...)
}

// Gather implements prometheus.Gatherer: the metrics of every endpoint, a
// draining one's only while no new Writer of the same name reports.
func (g *Group) Gather() ([]*dto.MetricFamily, error) {
	g.mu.Lock()
	cur := *g.cur.Load()
	names := map[string]bool{}
	gs := prometheus.Gatherers{g.own}
	for _, m := range cur {
		names[m.name] = true
		gs = append(gs, m.reg)
	}
	for m := range g.all {
		if m.draining.Load() && !names[m.name] {
			gs = append(gs, m.reg)
		}
	}
	g.mu.Unlock()
	return gs.Gather()
}
