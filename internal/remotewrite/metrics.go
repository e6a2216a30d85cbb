package remotewrite

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

const metricPrefix = "kubelet_meta_proxy_remote_write_"

// Reasons for dropping samples (label reason of samples_dropped_total). Final
// HTTP rejections use "http_<status>", see dropReason.
const (
	reasonQueueFull     = "queue_full"
	reasonShutdown      = "shutdown"
	reasonInvalidSeries = "invalid_series"
)

// metrics are the Writer's self-metrics, labelled by endpoint (remote_name,
// url).
type metrics struct {
	samplesIn       *prometheus.CounterVec
	samplesSent     *prometheus.CounterVec
	samplesRetried  *prometheus.CounterVec
	samplesFailed   *prometheus.CounterVec
	samplesDropped  *prometheus.CounterVec
	bytesSent       *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	diskFallback    *prometheus.CounterVec

	queueLength   *prometheus.Desc
	queueCapacity *prometheus.Desc
	shards        *prometheus.Desc
	highestSent   *prometheus.Desc

	queues       []*queue // for the gauges, read at collection time
	tenantQueues []*tenantQueue
}

var endpointLabels = []string{"remote_name", "url"}

func newMetrics() *metrics {
	counter := func(name, help string, extra ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricPrefix + name, Help: help},
			append(endpointLabels[:len(endpointLabels):len(endpointLabels)], extra...))
	}
	gauge := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(metricPrefix+name, help, endpointLabels, nil)
	}
	return &metrics{
		samplesIn:      counter("samples_in_total", "Samples appended to the endpoint's queue (before any drop)."),
		samplesSent:    counter("samples_sent_total", "Samples the endpoint accepted."),
		samplesRetried: counter("samples_retried_total", "Samples in requests that failed recoverably and were sent again."),
		samplesFailed: counter("samples_failed_total",
			"Samples the endpoint rejected for good (non-retryable 4xx or other final errors); also counted in samples_dropped_total."),
		samplesDropped: counter("samples_dropped_total",
			"Samples never delivered, by reason: queue_full (oldest dropped), shutdown, invalid_series, http_<status>.", "reason"),
		bytesSent: counter("bytes_sent_total", "Compressed request bytes the endpoint accepted."),
		diskFallback: counter("disk_fallback_samples_total",
			"Samples sent from memory because the endpoint's disk queue refused them, by reason (unavailable: disk full, read-only or removed; too_large; open_failed; closed).", "reason"),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metricPrefix + "request_duration_seconds",
			Help:    "Duration of remote-write HTTP requests, by status code (code=\"error\" when there was no response).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14), // 5ms .. 41s
		}, append(endpointLabels[:len(endpointLabels):len(endpointLabels)], "code")),
		queueLength:   gauge("queue_length", "Samples held for the endpoint: buffered plus being sent."),
		queueCapacity: gauge("queue_capacity", "Most samples buffered for the endpoint (excluding batches being sent)."),
		shards:        gauge("shards", "Concurrent senders of the endpoint."),
		highestSent: gauge("highest_sent_timestamp_seconds",
			"Highest sample timestamp the endpoint accepted, in seconds since the epoch."),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		m.samplesIn, m.samplesSent, m.samplesRetried, m.samplesFailed, m.samplesDropped,
		m.bytesSent, m.requestDuration, m.diskFallback, gaugeCollector{m},
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// gaugeCollector reports the queues' state when scraped, so the hot path
// does not maintain gauges.
type gaugeCollector struct{ m *metrics }

func (g gaugeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.m.queueLength
	ch <- g.m.queueCapacity
	ch <- g.m.shards
	ch <- g.m.highestSent
}

func (g gaugeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, q := range g.m.queues {
		name, url := q.name, q.urlLabel
		ch <- prometheus.MustNewConstMetric(g.m.queueLength, prometheus.GaugeValue, float64(q.length()), name, url)
		ch <- prometheus.MustNewConstMetric(g.m.queueCapacity, prometheus.GaugeValue, float64(q.capacity()), name, url)
		ch <- prometheus.MustNewConstMetric(g.m.shards, prometheus.GaugeValue, float64(len(q.shards)), name, url)
		ch <- prometheus.MustNewConstMetric(g.m.highestSent, prometheus.GaugeValue, float64(q.highestSent.Load())/1000, name, url)
	}
	for _, q := range g.m.tenantQueues {
		name, url := q.name, q.urlLabel
		ch <- prometheus.MustNewConstMetric(g.m.queueLength, prometheus.GaugeValue, float64(q.length()), name, url)
		ch <- prometheus.MustNewConstMetric(g.m.queueCapacity, prometheus.GaugeValue, float64(q.cfg.Capacity), name, url)
		ch <- prometheus.MustNewConstMetric(g.m.shards, prometheus.GaugeValue, float64(q.cfg.Shards), name, url)
		ch <- prometheus.MustNewConstMetric(g.m.highestSent, prometheus.GaugeValue, float64(q.highestSent.Load())/1000, name, url)
	}
}

// queueMetrics are one endpoint's children of metrics, resolved once.
type queueMetrics struct {
	samplesIn, samplesSent, samplesRetried, samplesFailed, bytesSent prometheus.Counter
	droppedQueueFull, droppedShutdown, droppedInvalid                prometheus.Counter

	dropped  *prometheus.CounterVec // curried with the endpoint labels; by reason
	duration prometheus.ObserverVec // curried with the endpoint labels; by code
}

func (m *metrics) forQueue(name, url string) *queueMetrics {
	l := prometheus.Labels{"remote_name": name, "url": url}
	dropped := m.samplesDropped.MustCurryWith(l)
	return &queueMetrics{
		samplesIn:        m.samplesIn.With(l),
		samplesSent:      m.samplesSent.With(l),
		samplesRetried:   m.samplesRetried.With(l),
		samplesFailed:    m.samplesFailed.With(l),
		bytesSent:        m.bytesSent.With(l),
		droppedQueueFull: dropped.WithLabelValues(reasonQueueFull),
		droppedShutdown:  dropped.WithLabelValues(reasonShutdown),
		droppedInvalid:   dropped.WithLabelValues(reasonInvalidSeries),
		dropped:          dropped,
		duration:         m.requestDuration.MustCurryWith(l),
	}
}

// observeDuration records a request's duration; code 0 means no response.
// Called by the shards concurrently; the label lookup is cheap next to an
// HTTP request, so no local cache is kept.
func (qm *queueMetrics) observeDuration(code int, seconds float64) {
	label := "error"
	if code != 0 {
		label = strconv.Itoa(code)
	}
	qm.duration.WithLabelValues(label).Observe(seconds)
}
