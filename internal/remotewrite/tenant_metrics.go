package remotewrite

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons for dropping samples that only tenant routing has.
const (
	// reasonNoTenant: the series has no (valid) tenant label and
	// tenant.missing is "drop".
	reasonNoTenant = "no_tenant"
	// reasonTenantLimit: the endpoint already queues tenant.max_tenants
	// tenants.
	reasonTenantLimit = "tenant_limit"
)

// tenantMetrics are the per-tenant self-metrics: labelled by endpoint and
// tenant, deleted when a tenant is forgotten, so that a tenant that went away
// stops costing series on /metrics/self too.
type tenantMetrics struct {
	sent      *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	retried   *prometheus.CounterVec
	dedup     *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	length    *prometheus.Desc
	share     *prometheus.Desc
	tenants   *prometheus.Desc
	backedOff *prometheus.Desc

	queues []*tenantQueue
}

var tenantLabels = []string{"remote_name", "url", "tenant"}

func newTenantMetrics() *tenantMetrics {
	counter := func(name, help string, extra ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricPrefix + name, Help: help},
			append(tenantLabels[:len(tenantLabels):len(tenantLabels)], extra...))
	}
	return &tenantMetrics{
		sent:    counter("tenant_samples_sent_total", "Samples the endpoint accepted, by tenant (HA duplicates included)."),
		bytes:   counter("tenant_bytes_sent_total", "Compressed request bytes the endpoint accepted, by tenant."),
		retried: counter("tenant_samples_retried_total", "Samples in requests of the tenant that failed recoverably (429, 5xx, network) and were sent again."),
		dedup: counter("tenant_samples_deduplicated_total",
			"Samples the receiver answered 202 for: its HA tracker kept the other replica's (delivered, not lost)."),
		dropped: counter("tenant_samples_dropped_total",
			"Samples of the tenant never delivered, by reason: queue_full, shutdown, invalid_series, http_<status>.", "reason"),
		length: prometheus.NewDesc(metricPrefix+"tenant_queue_length",
			"Samples held for the tenant: buffered plus being sent.", tenantLabels, nil),
		share: prometheus.NewDesc(metricPrefix+"tenant_queue_share",
			"The tenant's part of the endpoint's queue capacity in use (0-1); when the queue is full the largest tenant loses its oldest samples.", tenantLabels, nil),
		backedOff: prometheus.NewDesc(metricPrefix+"tenant_backoff",
			"1 while the tenant waits before its next request (after a 429, 5xx or rejection); the other tenants keep sending.", tenantLabels, nil),
		tenants: prometheus.NewDesc(metricPrefix+"tenants",
			"Tenants the endpoint holds a queue for (bounded by tenant.max_tenants; idle ones are forgotten).", endpointLabels, nil),
	}
}

func (tm *tenantMetrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{tm.sent, tm.bytes, tm.retried, tm.dedup, tm.dropped, tenantGauges{tm}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// tenantChildren are one tenant's counters, resolved once.
type tenantChildren struct {
	sent, bytes, retried, dedup, dropQueueFull, dropShutdown, dropInvalid prometheus.Counter
	dropped                                                               *prometheus.CounterVec
}

func (tm *tenantMetrics) children(name, url, tenant string) tenantChildren {
	l := prometheus.Labels{"remote_name": name, "url": url, "tenant": tenant}
	d := tm.dropped.MustCurryWith(l)
	return tenantChildren{
		sent: tm.sent.With(l), bytes: tm.bytes.With(l), retried: tm.retried.With(l), dedup: tm.dedup.With(l),
		dropQueueFull: d.WithLabelValues(reasonQueueFull),
		dropShutdown:  d.WithLabelValues(reasonShutdown),
		dropInvalid:   d.WithLabelValues(reasonInvalidSeries),
		dropped:       d,
	}
}

// forget deletes a tenant's series.
func (tm *tenantMetrics) forget(name, url, tenant string) {
	l := prometheus.Labels{"remote_name": name, "url": url, "tenant": tenant}
	for _, v := range []*prometheus.CounterVec{tm.sent, tm.bytes, tm.retried, tm.dedup, tm.dropped} {
		v.DeletePartialMatch(l)
	}
}

type tenantGauges struct{ tm *tenantMetrics }

func (g tenantGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.tm.length
	ch <- g.tm.share
	ch <- g.tm.backedOff
	ch <- g.tm.tenants
}

func (g tenantGauges) Collect(ch chan<- prometheus.Metric) {
	for _, q := range g.tm.queues {
		for _, s := range q.snapshot() {
			ch <- prometheus.MustNewConstMetric(g.tm.length, prometheus.GaugeValue, float64(s.length), q.name, q.urlLabel, s.name)
			ch <- prometheus.MustNewConstMetric(g.tm.share, prometheus.GaugeValue, float64(s.length)/float64(q.cfg.Capacity), q.name, q.urlLabel, s.name)
			b := 0.0
			if s.backedOff {
				b = 1
			}
			ch <- prometheus.MustNewConstMetric(g.tm.backedOff, prometheus.GaugeValue, b, q.name, q.urlLabel, s.name)
		}
		ch <- prometheus.MustNewConstMetric(g.tm.tenants, prometheus.GaugeValue, float64(q.liveTenants()), q.name, q.urlLabel)
	}
}
