package remotewrite

import (
	"bytes"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/s2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

const benchBatch = 2000 // Prometheus's default request size

// benchSamples is one full batch of real cAdvisor series from the 1.35
// capture, with the target labels the relay adds, each series once, as a
// shard sends a part of one scrape.
func benchSamples(b *testing.B) ([]model.Sample, []fixtureSeries) {
	_, fx := captureTargets(b, 1, benchBatch)
	if len(fx[0]) != benchBatch {
		b.Fatalf("capture has %d series", len(fx[0]))
	}
	return samplesOf(fx[0], 0), fx[0]
}

func reportPerSample(b *testing.B, n, wireBytes int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/sample")
	if wireBytes > 0 {
		b.ReportMetric(float64(wireBytes)/float64(n), "wire-B/sample")
	}
}

// BenchmarkEncode compares, for one 2000-sample batch, the ways to turn
// samples into a request body: the label-aware snappy encoder (encoder), the
// previous marshal + s2.EncodeSnappy (refEncoder), and the usual way in
// Prometheus's ecosystem (fill prompb structs, Marshal, golang/snappy), given
// each series' labels already decoded and its structs and buffers reused.
// Mixed is four targets' batches of 500 in one request.
func BenchmarkEncode(b *testing.B) {
	samples, fx := benchSamples(b)
	raw := referenceRaw(samples)
	_, four := captureTargets(b, 4, benchBatch/4)
	var mixed []model.Sample
	for _, f := range four {
		mixed = append(mixed, samplesOf(f, 0)...)
	}

	for _, c := range []struct {
		name    string
		samples []model.Sample
	}{{"", samples}, {"mixed-", mixed}} {
		b.Run(c.name+"label-aware", func(b *testing.B) {
			var e encoder
			body, _, _ := e.encode(c.samples)
			b.SetBytes(int64(len(referenceRaw(c.samples))))
			wire := len(body)
			b.ReportAllocs()
			for b.Loop() {
				e.encode(c.samples)
			}
			reportPerSample(b, len(c.samples), wire)
		})
		b.Run(c.name+"marshal+s2", func(b *testing.B) {
			var e refEncoder
			body, _, _ := e.encode(c.samples)
			b.SetBytes(int64(len(e.raw)))
			wire := len(body)
			b.ReportAllocs()
			for b.Loop() {
				e.encode(c.samples)
			}
			reportPerSample(b, len(c.samples), wire)
		})
	}

	b.Run("marshal-only", func(b *testing.B) {
		var e refEncoder
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		for b.Loop() {
			e.marshal(samples)
		}
		reportPerSample(b, len(samples), 0)
	})

	b.Run("prompb+snappy", func(b *testing.B) {
		merged := prompbLabels(fx)
		wr := prompbBatch(samples, merged)
		var buf, out []byte
		buf = marshalPrompb(&wr, buf)
		b.SetBytes(int64(len(buf)))
		out = snappy.Encode(out, buf)
		wire := len(out)
		b.ReportAllocs()
		for b.Loop() {
			wr = fillPrompb(wr, samples, merged)
			buf = marshalPrompb(&wr, buf)
			out = snappy.Encode(out[:cap(out)], buf)
		}
		reportPerSample(b, len(samples), wire)
	})
}

func prompbLabels(fx []fixtureSeries) [][]prompb.Label {
	out := make([][]prompb.Label, len(fx))
	for i, f := range fx {
		var ls []prompb.Label
		f.labels.Range(func(l labels.Label) { ls = append(ls, prompb.Label{Name: l.Name, Value: l.Value}) })
		out[i] = ls
	}
	return out
}

func prompbBatch(samples []model.Sample, merged [][]prompb.Label) prompb.WriteRequest {
	wr := prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, len(samples))}
	for i := range wr.Timeseries {
		wr.Timeseries[i].Samples = make([]prompb.Sample, 1)
	}
	return fillPrompb(wr, samples, merged)
}

func fillPrompb(wr prompb.WriteRequest, samples []model.Sample, merged [][]prompb.Label) prompb.WriteRequest {
	for i, s := range samples {
		ts := &wr.Timeseries[i]
		ts.Labels = merged[i]
		ts.Samples[0] = prompb.Sample{Value: s.V, Timestamp: s.T}
	}
	return wr
}

func marshalPrompb(wr *prompb.WriteRequest, buf []byte) []byte {
	size := wr.Size()
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	n, err := wr.MarshalToSizedBuffer(buf[:size])
	if err != nil {
		panic(err)
	}
	return buf[:n]
}

// BenchmarkAppend measures the caller's cost of handing a scrape's samples
// to a 4-shard queue (grouping by shard and copying into the rings).
func BenchmarkAppend(b *testing.B) {
	fx := loadFixture(b)
	samples := make([]model.Sample, 10_000)
	for i := range samples {
		samples[i] = fx[i%len(fx)].series.at(int64(i), 1)
	}
	ep := testEndpoint("http://127.0.0.1:1/push")
	ep.Queue = DefaultQueueConfig()
	ep.Queue.Capacity = 1_000_000
	w, err := New(Config{Endpoints: []EndpointConfig{ep}, ShutdownTimeout: time.Second}, testLogger(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(samples)) * 32)
	b.ReportAllocs()
	for b.Loop() {
		w.Append(samples)
	}
	reportPerSample(b, len(samples), 0)
}

// BenchmarkCompress compares the two general snappy block encoders on a
// marshalled batch (what refEncoder does after marshal).
func BenchmarkCompress(b *testing.B) {
	samples, _ := benchSamples(b)
	raw := referenceRaw(samples)
	out := make([]byte, max(s2.MaxEncodedLen(len(raw)), snappy.MaxEncodedLen(len(raw))))
	for _, c := range []struct {
		name string
		enc  func(dst, src []byte) []byte
	}{{"golang-snappy", snappy.Encode}, {"s2-snappy", s2.EncodeSnappy}} {
		b.Run(c.name, func(b *testing.B) {
			wire := len(c.enc(out, raw))
			if d, err := snappy.Decode(nil, c.enc(out, raw)); err != nil || !bytes.Equal(d, raw) {
				b.Fatalf("not a snappy block: %v", err)
			}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				c.enc(out, raw)
			}
			reportPerSample(b, len(samples), wire)
		})
	}
}
