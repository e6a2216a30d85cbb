package diskqueue

import (
	"github.com/prometheus/client_golang/prometheus"
)

const metricPrefix = "kubelet_meta_proxy_disk_queue_"

type metrics struct {
	bytes, records, samples, oldest prometheus.Gauge

	appendedRecords, appendedBytes prometheus.Counter
	readRecords, readBytes         prometheus.Counter
	directRecords                  prometheus.Counter
	ackedRecords                   prometheus.Counter

	droppedRecords, droppedBytes, droppedSamples *prometheus.CounterVec
	appendErrors                                 *prometheus.CounterVec
	fsync                                        prometheus.Histogram
}

func newMetrics(name string, reg prometheus.Registerer) (*metrics, error) {
	cl := prometheus.Labels{"remote_name": name}
	g := func(n, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: metricPrefix + n, Help: help, ConstLabels: cl})
	}
	c := func(n, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: metricPrefix + n, Help: help, ConstLabels: cl})
	}
	cv := func(n, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricPrefix + n, Help: help, ConstLabels: cl}, []string{"reason"})
	}
	m := &metrics{
		bytes:           g("bytes", "Bytes of segment files on disk."),
		records:         g("records", "Records on disk not yet acknowledged."),
		samples:         g("samples", "Samples in records on disk not yet acknowledged."),
		oldest:          g("oldest_sample_timestamp_seconds", "Timestamp of the oldest sample not yet acknowledged (0 when empty); time() minus this is the backlog's age."),
		appendedRecords: c("appended_records_total", "Records appended."),
		appendedBytes:   c("appended_bytes_total", "Bytes appended, framing included."),
		readRecords:     c("read_records_total", "Records read (handed to the sender)."),
		readBytes:       c("read_bytes_total", "Bytes read, framing included."),
		directRecords:   c("direct_records_total", "Of read_records_total, the records handed to the sender from memory as they were appended (nothing backlogged before them), not read back from disk."),
		ackedRecords:    c("acked_records_total", "Records acknowledged after a successful send; its rate is the drain rate."),
		droppedRecords:  cv("dropped_records_total", "Records dropped or skipped, by reason (full, corrupt, torn, removed). A corrupt region counts as one record."),
		droppedBytes:    cv("dropped_bytes_total", "Bytes dropped or skipped, by reason."),
		droppedSamples:  cv("dropped_samples_total", "Samples in dropped records, by reason (where the header was readable)."),
		appendErrors:    cv("append_errors_total", "Appends refused because the disk failed, by reason (enospc, readonly, removed, io)."),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: metricPrefix + "fsync_duration_seconds", Help: "Duration of one Sync (fsync of segments, directory and checkpoint).",
			ConstLabels: cl, Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8),
		}),
	}
	for _, r := range []string{reasonFull, reasonCorrupt, reasonTorn, reasonRemoved} {
		m.droppedRecords.WithLabelValues(r)
		m.droppedBytes.WithLabelValues(r)
		m.droppedSamples.WithLabelValues(r)
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.bytes, m.records, m.samples, m.oldest, m.appendedRecords, m.appendedBytes,
			m.readRecords, m.readBytes, m.directRecords, m.ackedRecords, m.droppedRecords, m.droppedBytes, m.droppedSamples, m.appendErrors, m.fsync} {
			if err := reg.Register(col); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
