package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/promconfig"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relay"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/remotewrite"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"
)

// configFileOptions are --config.file (Prometheus's global.external_labels
// and remote_write sections) and --self-metrics-remote-write.
type configFileOptions struct {
	File       string
	SelfMetric bool
	fs         *pflag.FlagSet // to tell flags given from defaults
}

// endpointFlags are the flags that set what a remote_write entry sets; they
// cannot be combined with a --config.file that has remote_write entries.
var endpointFlags = []string{
	"remote-write-url", "remote-write-config", "remote-write-timeout", "remote-write-bearer-token-file",
	"remote-write-basic-auth-username", "remote-write-basic-auth-password-file", "remote-write-ca-file",
	"remote-write-cert-file", "remote-write-key-file", "remote-write-insecure-skip-verify", "remote-write-header",
	"max-samples-per-send", "batch-send-deadline", "min-backoff", "max-backoff",
	"remote-write-queue-capacity", "remote-write-shards",
}

func (o *configFileOptions) AddFlags(fs *pflag.FlagSet) {
	o.fs = fs
	fs.StringVar(&o.File, "config.file", o.File,
		"Prometheus-style YAML file: its global.external_labels and remote_write sections are read as Prometheus reads them (a remote_write block copied from a prometheus.yml works unchanged). Re-read on SIGHUP and POST /-/reload. Cannot be combined with the flags that set the same things.")
	fs.BoolVar(&o.SelfMetric, "self-metrics-remote-write", o.SelfMetric,
		`Also send the relay's own metrics (/metrics/self) through remote write, every --scrape-interval, with job="kubelet-meta-proxy".`)
}

// apply reads the file into cfg and ext, refusing what is given both in
// the file and by flags.
func (o *configFileOptions) apply(cfg *remotewrite.Config, ext *[]model.Label, defaults remotewrite.EndpointConfig) error {
	if o.File == "" {
		return nil
	}
	pf, err := promconfig.Load(o.File, defaults)
	if err != nil {
		return fmt.Errorf("--config.file: %w", err)
	}
	var errs []error
	if len(pf.Endpoints) > 0 {
		for _, f := range endpointFlags {
			if o.fs != nil && o.fs.Changed(f) {
				errs = append(errs, fmt.Errorf("--%s and --config.file %s (remote_write, line %d) both configure remote write; use one of them", f, o.File, pf.Endpoints[0].Origin.Line))
			}
		}
		cfg.Endpoints = append(cfg.Endpoints, pf.Endpoints...)
	}
	if len(pf.ExternalLabels) > 0 {
		if len(*ext) > 0 {
			errs = append(errs, fmt.Errorf("--external-label and --config.file %s (global.external_labels) both set external labels; use one of them", o.File))
		} else {
			*ext = pf.ExternalLabels
			if err := validateExternalLabels(*ext); err != nil {
				errs = append(errs, fmt.Errorf("--config.file %s: global.external_labels: %w", o.File, err))
			}
		}
	}
	return errors.Join(errs...)
}

// reloader re-reads the remote-write configuration (SIGHUP, /-/reload) and
// applies it to the running Group.
type reloader struct {
	mu      sync.Mutex
	rw      *remoteWriteOptions
	group   *remotewrite.Group
	logger  *slog.Logger
	ok      prometheus.Gauge
	okTime  prometheus.Gauge
	current []model.Label
}

func newReloader(rw *remoteWriteOptions, group *remotewrite.Group, logger *slog.Logger, reg prometheus.Registerer) *reloader {
	r := &reloader{
		rw: rw, group: group, logger: logger, current: rw.externalLabels(),
		ok: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubelet_meta_proxy_config_last_reload_successful",
			Help: "Whether the last configuration reload attempt was successful.",
		}),
		okTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubelet_meta_proxy_config_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful configuration reload.",
		}),
	}
	r.ok.Set(1)
	r.okTime.SetToCurrentTime()
	reg.MustRegister(r.ok, r.okTime)
	return r
}

// reload re-reads the files and applies the result; on error the running
// configuration stays.
func (r *reloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.rw.Validate()
	if err == nil && !slices.Equal(r.rw.externalLabels(), r.current) {
		// The scrape loops hold the external labels in their encoded series.
		err = errors.New("external labels changed; they take effect at restart only")
	}
	if err == nil {
		err = r.group.Apply(r.rw.Config())
	}
	if err != nil {
		r.ok.Set(0)
		r.logger.Error("configuration reload failed; keeping the running configuration", "err", err)
		return err
	}
	r.ok.Set(1)
	r.okTime.SetToCurrentTime()
	r.logger.Info("configuration reloaded", "endpoints", len(r.rw.Config().Endpoints))
	return nil
}

// viewMetadata lists the families of the /metrics view for remote write's
// metadata: what the relay has seen, as the targets exposed it.
type viewMetadata struct{ v *view.View }

func (m viewMetadata) AppendMetadata(dst []remotewrite.Metadata) []remotewrite.Metadata {
	tvs := m.v.Targets()
	defer m.v.Release(tvs)
	seen := map[string]bool{}
	for _, tv := range tvs {
		for _, f := range tv.Families {
			if seen[f.Name] {
				continue
			}
			seen[f.Name] = true
			typ := strings.ToLower(f.Type)
			if typ == "" || typ == "untyped" {
				typ = "unknown"
			}
			dst = append(dst, remotewrite.Metadata{Family: f.Name, Type: typ, Help: f.Help})
		}
	}
	slices.SortFunc(dst, func(a, b remotewrite.Metadata) int { return strings.Compare(a.Family, b.Family) })
	return dst
}

// selfMetricsInterval is how often the self-metrics are sent when no
// scrape interval is known.
const selfMetricsInterval = 30 * time.Second

// runSelfMetrics sends the relay's own metrics through remote write
// (--self-metrics-remote-write) until ctx ends.
func runSelfMetrics(ctx context.Context, g prometheus.Gatherer, sink relay.Sink, interval time.Duration, ext []model.Label, logger *slog.Logger) {
	if interval <= 0 {
		interval = selfMetricsInterval
	}
	instance := os.Getenv("POD_NAME")
	if instance == "" {
		instance, _ = os.Hostname()
	}
	s := &relay.SelfScraper{Gatherer: g, Sink: sink, Interval: interval, Instance: instance, ExternalLabels: ext, Logger: logger}
	s.Run(ctx)
}
