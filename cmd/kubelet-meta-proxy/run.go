package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/kubeclient"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relay"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/memlimit"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/nsindex"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/remotewrite"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/server"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/version"
)

// defaultGOGC is the GC target used unless $GOGC is set.
const defaultGOGC = 15

type runOptions struct {
	commonOptions
	serve serveOptions
	rw    remoteWriteOptions
	mem   memoryOptions
}

func newRunCommand() *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Scrape every node, enrich, serve /metrics and remote-write, until stopped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// AddFlags registers every flag of run.
func (o *runOptions) AddFlags(fs *pflag.FlagSet) {
	o.commonOptions.AddFlags(fs)
	o.serve.AddFlags(fs)
	o.rw.AddFlags(fs)
	o.mem.AddFlags(fs)
}

func (o *runOptions) Validate() error {
	return errors.Join(o.commonOptions.Validate(), o.serve.Validate(), o.rw.Validate(), o.mem.Validate())
}

// Run runs the relay until ctx is done, then stops scraping, ends every
// series with stale markers and flushes remote write (--shutdown-timeout).
func (o *runOptions) Run(ctx context.Context) error {
	logger := o.log.logger()
	logger.Info("starting kubelet-meta-proxy", "version", version.Version, "commit", version.Commit, "mode", o.kube.Mode)
	o.kube.logKubeletTLS(logger)
	if os.Getenv("GOGC") == "" {
		// Almost all of the heap is the series cache, which lives for the
		// whole run, holds no pointers (a GC cycle need not scan it) and
		// the steady state allocates little: collecting at 15% growth
		// instead of 100% costs a GC or two per round and keeps the
		// footprint near the live heap. In the 50x30 load benchmark 15
		// against 30 took peak RSS from 119 to 112 MiB at the same CPU.
		// GOGC and GOMEMLIMIT in the environment override it.
		debug.SetGCPercent(defaultGOGC)
		if t := o.mem.gcTuner(); t != nil {
			go t.Run(ctx)
			logger.Info("GC percent follows the live heap", "max_percent", defaultGOGC, "min_percent", minGOGC, "headroom_mib", o.mem.GCHeadroomMiB)
		}
	}
	o.mem.apply(memlimit.OS(), logger)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), version.NewBuildInfoCollector())
	rwCfg := o.rw.Config()
	p, err := o.pipeline()
	if err != nil {
		return err
	}
	c, nodeFetcher, plainFetcher, nodeOpts := p.clients, p.nodeFetcher, p.plainFetcher, p.nodeTargets
	if err := checkAPIServer(ctx, c.kube.CoreV1(), c.config.Host, apiserverCheckTimeout, logger); err != nil {
		return err
	}

	// A Group, so that SIGHUP and /-/reload can change the endpoints
	// (config_file.go); it is the sink even with no endpoint yet when a
	// file may add some.
	writer, err := remotewrite.NewGroup(rwCfg, logger.With("component", "remote-write"))
	if err != nil {
		return err
	}
	reloadable := o.rw.ConfigFile != "" || o.rw.Prom.File != ""
	var sink relay.Sink
	if rwCfg.Enabled() || reloadable {
		sink = writer
	} else {
		writer = nil
	}
	var gatherer prometheus.Gatherer = reg
	if writer != nil {
		gatherer = prometheus.Gatherers{reg, writer}
	}
	var rl *reloader
	if writer != nil && reloadable {
		rl = newReloader(&o.rw, writer, logger.With("component", "config"), reg)
	}

	index := nsindex.New(c.metadata, o.enrich.mapper(), 0, logger.With("component", "nsindex"), reg)
	pods, podCfg, err := o.pod.index(&o.kube, c, logger.With("component", "podindex"), reg)
	if err != nil {
		return err
	}
	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	nodes := scrape.NewNodeDiscovery(c.kube, o.kube.NodeSelector, nodeOpts, notify)
	// The node informer's twin of nsindex's informer_synced{resource="namespaces"}
	// (same name and help), so one alert covers both caches.
	var nodesSynced atomic.Bool
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "kubelet_meta_proxy_informer_synced",
		Help:        "1 once the informer's cache of the resource has synced.",
		ConstLabels: prometheus.Labels{"resource": "nodes"},
	}, func() float64 {
		if nodesSynced.Load() {
			return 1
		}
		return 0
	}))
	view := view.NewView()
	if writer != nil {
		writer.SetMetadataSource(viewMetadata{view})
	}
	mgr := relay.NewManager(relay.ManagerConfig{
		Interval: o.scrape.Interval, Timeout: o.scrape.Timeout, MaxConcurrency: o.scrape.MaxConcurrency,
		HonorTimestamps: o.scrape.HonorTimestamps, ExternalLabels: o.rw.externalLabels(),
		NodeFetcher: nodeFetcher, PlainFetcher: plainFetcher,
		Namespaces: index, Pods: podCfg, View: view, Sink: sink, Logger: logger.With("component", "scrape"), Registerer: reg,
		Limits: o.limits.Config(),
	})

	var ready readiness
	srvCfg := server.Config{Address: o.serve.address(), View: view, Gatherer: gatherer, Ready: ready.err, Logger: logger.With("component", "server")}
	if rl != nil {
		srvCfg.Reload = rl.reload
	}
	var authz *server.KubeAuthorizer
	if o.serve.Secure {
		if srvCfg.TLS, err = server.TLSConfig(o.serve.TLSCertFile, o.serve.TLSKeyFile, srvCfg.Logger, reg); err != nil {
			return fmt.Errorf("--metrics-secure (--tls-cert-file, --tls-private-key-file): %w", err)
		}
		if !o.serve.EnableHTTP2 {
			srvCfg.TLS.NextProtos = []string{"http/1.1"}
		}
		// A client of its own without client-go's rate limiter (QPS 5): the
		// authorizer's own limit (reviews per second, then 429) is the only
		// one, so a flood of garbage tokens is refused at once instead of
		// queueing requests behind the informers' calls.
		reviewClient, err := kubeclient.NewForConfig(unthrottled(c.config))
		if err != nil {
			return fmt.Errorf("--metrics-secure: %w", err)
		}
		if authz, err = server.NewKubeAuthorizer(server.AuthConfig{Client: reviewClient, Logger: srvCfg.Logger, Registerer: reg}); err != nil {
			return fmt.Errorf("--metrics-secure: %w", err)
		}
		srvCfg.Authorizer = authz
	}
	ln, err := net.Listen("tcp", srvCfg.Address)
	if err != nil {
		return fmt.Errorf("--metrics-port: %w", err)
	}
	logger.Info("serving", "address", ln.Addr().String(), "secure", o.serve.Secure)

	// Three lifetimes: informers and the server live until the end; the
	// scrape loops stop first; remote write last, so it can flush what the
	// loops' final stale markers added.
	var wg sync.WaitGroup
	infCtx, stopInformers := context.WithCancel(context.Background())
	defer stopInformers()
	srvCtx, stopServer := context.WithCancel(context.Background())
	defer stopServer()
	rwCtx, stopWriter := context.WithCancel(context.Background())
	defer stopWriter()
	srvErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := server.New(srvCfg).Run(srvCtx, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			srvErr <- err
		}
	}()
	rwDone := make(chan error, 1)
	if writer != nil {
		go func() { rwDone <- writer.Run(rwCtx) }()
	} else {
		close(rwDone)
	}
	go index.Run(infCtx)
	if pods != nil {
		go pods.Run(infCtx)
	}
	go nodes.Run(infCtx)
	if authz != nil {
		go authz.Run(infCtx)
	}

	syncCtx, cancelSync := context.WithTimeout(ctx, o.enrich.CacheSyncTimeout)
	nsOK := index.WaitForSync(syncCtx)
	nodesOK := nodes.WaitForSync(syncCtx)
	podsOK := pods == nil || pods.WaitForSync(syncCtx)
	if nodesOK {
		nodesSynced.Store(true)
	}
	cancelSync()
	if ctx.Err() == nil && (!nsOK || !nodesOK || !podsOK) {
		stopServer()
		wg.Wait()
		what := "namespaces (RBAC: list/watch namespaces)"
		if nsOK {
			what = "nodes (RBAC: list/watch nodes)"
		}
		if nsOK && nodesOK {
			what = "pods (RBAC: list/watch pods; with --workload-labels also replicasets and jobs)"
		}
		return fmt.Errorf("caches did not sync within --cache-sync-timeout=%s: %s; check the relay's RBAC and its connection to the apiserver", o.enrich.CacheSyncTimeout, what)
	}
	ready.set(nil)
	logger.Info("caches synced", "namespaces", index.Snapshot().Len(), "nodes", len(nodes.Targets()))

	plain := o.plainTargets()
	sync := func() {
		targets := append(nodes.Targets(), plain...)
		mgr.Sync(ctx, targets)
	}
	sync()
	// A short debounce: a burst of Node updates (heartbeats every 10s on
	// every node) makes one target recomputation, not hundreds.
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	hup := make(chan os.Signal, 1)
	if rl != nil {
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	if writer != nil && o.rw.Prom.SelfMetric {
		go runSelfMetrics(rwCtx, gatherer, writer, o.scrape.Interval, o.rw.externalLabels(), logger.With("component", "self-metrics"))
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-srvErr:
			logger.Error("server failed", "err", err)
			mgr.Stop()
			return err
		case <-changed:
			debounce.Reset(200 * time.Millisecond)
		case <-debounce.C:
			sync()
		case <-hup:
			_ = rl.reload() // logged; the running configuration stays on error
		}
	}

	logger.Info("shutting down: stopping scrapes, flushing remote write", "shutdown_timeout", o.rw.ShutdownTimeout)
	ready.set(errors.New("shutting down"))
	mgr.Stop()
	stopWriter()
	rwErr := <-rwDone
	if rwErr != nil {
		logger.Error("remote write did not flush everything", "err", rwErr)
	}
	stopServer()
	stopInformers()
	wg.Wait()
	logger.Info("stopped")
	// A non-zero exit status tells the operator (and the kubelet's events)
	// that samples were dropped at shutdown.
	return rwErr
}

type readiness struct {
	mu   sync.Mutex
	set_ bool
	e    error
}

func (r *readiness) set(err error) {
	r.mu.Lock()
	r.set_, r.e = true, err
	r.mu.Unlock()
}

func (r *readiness) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.set_ {
		return errors.New("waiting for the Namespace and Node caches to sync")
	}
	return r.e
}
