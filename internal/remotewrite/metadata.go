package remotewrite

import (
	"context"
	"log/slog"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	commonmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
)

// Metadata is one metric family's metadata, as remote write sends it.
type Metadata struct {
	Family, Type, Help, Unit string
}

// MetadataSource lists the metric families the relay has seen (name, type,
// help), appending them to dst. The caller of SetMetadataSource implements
// it; it is read every metadata_config.send_interval.
type MetadataSource interface {
	AppendMetadata(dst []Metadata) []Metadata
}

// metadataMetrics count metadata sent per endpoint, as Prometheus's
// prometheus_remote_storage_metadata_total and _failed_total do.
type metadataMetrics struct {
	sent, failed *prometheus.CounterVec
	// deferred: with tenant routing, entries not sent to a tenant in
	// backoff after a failed write.
	deferred *prometheus.CounterVec
}

func newMetadataMetrics() *metadataMetrics {
	return &metadataMetrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "metadata_sent_total",
			Help: "Metric family metadata entries the endpoint accepted.",
		}, endpointLabels),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "metadata_failed_total",
			Help: "Metric family metadata entries not delivered (sent again at the next interval).",
		}, endpointLabels),
		deferred: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricPrefix + "metadata_deferred_total",
			Help: "Metric family metadata entries not sent to a tenant backing off after a failed write (the families seen again are sent at a later interval).",
		}, endpointLabels),
	}
}

// sendMetadata sends src's metadata to c every cfg.SendInterval until ctx
// ends, as Prometheus does: requests holding only metadata, at most
// cfg.MaxSamplesPerSend entries each (0: all in one). A failed request is
// not retried before the next interval, which sends everything again.
func sendMetadata(ctx context.Context, c *client, cfg MetadataConfig, src MetadataSource, m *metadataMetrics, name, url string, logger *slog.Logger) {
	t := time.NewTicker(cfg.SendInterval)
	defer t.Stop()
	var md []Metadata
	limiter := newLogLimiter(logInterval)
	for {
		md = src.AppendMetadata(md[:0])
		for start := 0; start < len(md); {
			end := len(md)
			if cfg.MaxSamplesPerSend > 0 {
				end = min(end, start+cfg.MaxSamplesPerSend)
			}
			body := encodeMetadata(md[start:end])
			if _, err := c.send(ctx, body); err != nil {
				if ctx.Err() != nil {
					return
				}
				m.failed.WithLabelValues(name, url).Add(float64(end - start))
				if ok, suppressed := limiter.allow("metadata"); ok {
					logger.Warn("sending metric metadata failed; trying again at the next interval", "entries", end-start, "err", err, "similar_messages_suppressed", suppressed)
				}
			} else {
				m.sent.WithLabelValues(name, url).Add(float64(end - start))
			}
			start = end
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// encodeMetadata returns a snappy-compressed WriteRequest holding only
// metadata. It is not on the hot path (once a minute), so it uses prompb.
func encodeMetadata(md []Metadata) []byte {
	req := prompb.WriteRequest{Metadata: make([]prompb.MetricMetadata, len(md))}
	for i, m := range md {
		req.Metadata[i] = prompb.MetricMetadata{
			Type:             prompb.FromMetadataType(commonmodel.MetricType(m.Type)),
			MetricFamilyName: m.Family,
			Help:             m.Help,
			Unit:             m.Unit,
		}
	}
	b, err := req.Marshal()
	if err != nil {
		panic(err) // prompb marshals any value it holds
	}
	return snappy.Encode(nil, b)
}
