package relay

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
)

// The scrape loops' self-metrics (per target: up, duration, series, errors by
// reason; totals of samples, enrichment results, staleness and duplicates).

type metrics struct {
	targets    prometheus.Gauge
	duration   prometheus.Histogram
	lastDur    *prometheus.GaugeVec
	up         *prometheus.GaugeVec
	series     *prometheus.GaugeVec
	errors     *prometheus.CounterVec
	scraped    prometheus.Counter
	enrichment *prometheus.CounterVec
	skipped    prometheus.Counter
	stale      prometheus.Counter
	duplicates *prometheus.CounterVec
	dropped    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		targets: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubelet_meta_proxy_targets", Help: "Targets being scraped."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kubelet_meta_proxy_scrape_duration_seconds",
			Help: "Time to fetch, parse and enrich one target.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		lastDur: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubelet_meta_proxy_target_scrape_duration_seconds",
			Help: "Duration of the target's last scrape."}, []string{"target"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubelet_meta_proxy_target_up",
			Help: "1 if the target's last scrape succeeded."}, []string{"target"}),
		series: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubelet_meta_proxy_target_series",
			Help: "Samples in the target's last scrape."}, []string{"target"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubelet_meta_proxy_target_scrape_errors_total",
			Help: "Failed scrapes by target and reason."}, []string{"target", "reason"}),
		scraped: prometheus.NewCounter(prometheus.CounterOpts{Name: "kubelet_meta_proxy_samples_scraped_total",
			Help: "Samples read from targets."}),
		enrichment: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubelet_meta_proxy_enrichment_total",
			Help: "Samples by enrichment outcome: hit (namespace found), miss (namespace not in the index), none (no namespace label)."}, []string{"result"}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "kubelet_meta_proxy_samples_not_newer_total",
			Help: "Samples not sent again because their timestamp had not moved since the last one sent."}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{Name: "kubelet_meta_proxy_stale_markers_total",
			Help: "Stale markers written for series that went away or changed labels."}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubelet_meta_proxy_target_samples_duplicate_total",
			Help: "Samples dropped because their series was already in the same payload (as Prometheus's prometheus_target_scrapes_sample_duplicate_timestamp_total)."}, []string{"target"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "kubelet_meta_proxy_samples_relabel_dropped_total",
			Help: "Samples dropped by metric relabeling (--metric-relabel-preset, --metric-relabel-config-file)."}),
	}
	if reg != nil {
		reg.MustRegister(m.targets, m.duration, m.lastDur, m.up, m.series, m.errors, m.scraped, m.enrichment, m.skipped, m.stale, m.duplicates, m.dropped)
	}
	return m
}

func (m *metrics) observe(key string, res *Result) {
	dur := res.Duration.Seconds()
	m.duration.Observe(dur)
	m.lastDur.WithLabelValues(key).Set(dur)
	m.series.WithLabelValues(key).Set(float64(res.Scraped))
	m.scraped.Add(float64(res.Scraped))
	m.skipped.Add(float64(res.Skipped))
	m.stale.Add(float64(res.Stale))
	m.dropped.Add(float64(res.Dropped))
	if res.Duplicates > 0 {
		m.duplicates.WithLabelValues(key).Add(float64(res.Duplicates))
	}
	m.enrichment.WithLabelValues("hit").Add(float64(res.Enriched))
	m.enrichment.WithLabelValues("miss").Add(float64(res.Unknown))
	m.enrichment.WithLabelValues("none").Add(float64(res.Scraped - res.Enriched - res.Unknown))
	if res.Err != nil {
		m.up.WithLabelValues(key).Set(0)
		m.errors.WithLabelValues(key, ErrorReason(res.Err)).Inc()
	} else {
		m.up.WithLabelValues(key).Set(1)
	}
}

func (m *metrics) forget(key string) {
	m.lastDur.DeleteLabelValues(key)
	m.up.DeleteLabelValues(key)
	m.series.DeleteLabelValues(key)
	m.errors.DeletePartialMatch(prometheus.Labels{"target": key})
	m.duplicates.DeleteLabelValues(key)
}

// ErrorReason classifies a scrape error for metrics.
func ErrorReason(err error) string {
	var (
		pe *ParseError
		pm *scrape.PermissionError
		bl *scrape.BodyTooLargeError
		to *TimeoutError
	)
	var le *LimitError
	if errors.As(err, &le) {
		return le.Limit
	}
	switch {
	case errors.As(err, &pe):
		return "parse"
	case errors.As(err, &pm):
		return "permission"
	case errors.As(err, &bl):
		return "body_too_large"
	case errors.As(err, &to):
		return "timeout"
	}
	return "fetch"
}
