package remotewrite

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/s2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

const benchBatch = DefaultMaxSamplesPerSend

var benchExternal = []Label{{"__replica__", "kubelet-meta-proxy-7d9f8-x2x4q"}, {"cluster", "prod-eu-west-1"}}

// benchSamples is one full batch of real cAdvisor series, each sample with
// its own timestamp, as a shard sends it.
func benchSamples(b *testing.B) ([]Sample, []fixtureSeries, []int) {
	fx := loadFixture(b)
	samples := make([]Sample, benchBatch)
	index := make([]int, benchBatch) // which fixture series each sample is
	for i := range samples {
		f := fx[i%len(fx)]
		samples[i] = Sample{Series: f.series, T: f.t + int64(i/len(fx))*30_000, V: f.v}
		index[i] = i % len(fx)
	}
	return samples, fx, index
}

func reportPerSample(b *testing.B, wireBytes int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchBatch, "ns/sample")
	if wireBytes > 0 {
		b.ReportMetric(float64(wireBytes)/benchBatch, "wire-bytes/sample")
	}
}

// BenchmarkEncode compares the hand encoder with the usual way (fill
// prompb structs, Marshal) for one 2000-sample batch with two external
// labels. The prompb variant is given each series' labels already decoded,
// merged with the external labels and sorted, and reuses its structs and
// buffers: everything but the struct filling and Marshal is done for it, so
// the comparison favours it.
func BenchmarkEncode(b *testing.B) {
	samples, fx, index := benchSamples(b)

	b.Run("hand", func(b *testing.B) {
		e := encoder{external: newExternalLabels(benchExternal)}
		e.marshal(samples)
		b.SetBytes(int64(len(e.raw)))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			e.marshal(samples)
		}
		reportPerSample(b, 0)
	})

	b.Run("prompb", func(b *testing.B) {
		merged := prompbLabels(fx, benchExternal)
		wr, buf := prompbBatch(samples, index, merged), []byte(nil)
		b.SetBytes(int64(wr.Size()))
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			wr = fillPrompb(wr, samples, index, merged)
			buf = marshalPrompb(&wr, buf)
		}
		reportPerSample(b, 0)
	})
}

// BenchmarkEncodeCompress is BenchmarkEncode plus the snappy step: the whole
// cost of turning a batch into a request body, and the body's size.
func BenchmarkEncodeCompress(b *testing.B) {
	samples, fx, index := benchSamples(b)

	b.Run("hand", func(b *testing.B) {
		e := encoder{external: newExternalLabels(benchExternal)}
		body, _, _ := e.encode(samples)
		b.SetBytes(int64(len(e.raw)))
		wire := len(body)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			e.encode(samples)
		}
		reportPerSample(b, wire)
	})

	b.Run("prompb", func(b *testing.B) {
		merged := prompbLabels(fx, benchExternal)
		wr := prompbBatch(samples, index, merged)
		var buf, out []byte
		buf = marshalPrompb(&wr, buf)
		b.SetBytes(int64(len(buf)))
		out = snappy.Encode(out, buf)
		wire := len(out)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			wr = fillPrompb(wr, samples, index, merged)
			buf = marshalPrompb(&wr, buf)
			out = snappy.Encode(out[:cap(out)], buf)
		}
		reportPerSample(b, wire)
	})
}

func prompbLabels(fx []fixtureSeries, external []Label) [][]prompb.Label {
	out := make([][]prompb.Label, len(fx))
	for i, f := range fx {
		var ls []prompb.Label
		f.labels.Range(func(l labels.Label) { ls = append(ls, prompb.Label{Name: l.Name, Value: l.Value}) })
		for _, e := range external {
			if !f.labels.Has(e.Name) {
				ls = append(ls, prompb.Label{Name: e.Name, Value: e.Value})
			}
		}
		slices.SortFunc(ls, func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) })
		out[i] = ls
	}
	return out
}

func prompbBatch(samples []Sample, index []int, merged [][]prompb.Label) prompb.WriteRequest {
	wr := prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, len(samples))}
	for i := range wr.Timeseries {
		wr.Timeseries[i].Samples = make([]prompb.Sample, 1)
	}
	return fillPrompb(wr, samples, index, merged)
}

func fillPrompb(wr prompb.WriteRequest, samples []Sample, index []int, merged [][]prompb.Label) prompb.WriteRequest {
	for i, s := range samples {
		ts := &wr.Timeseries[i]
		ts.Labels = merged[index[i]]
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
	samples := make([]Sample, 10_000)
	for i := range samples {
		samples[i] = Sample{Series: fx[i%len(fx)].series, T: int64(i), V: 1}
	}
	ep := testEndpoint("http://127.0.0.1:1/push")
	ep.Queue = DefaultQueueConfig()
	ep.Queue.Capacity = 1_000_000
	w, err := New(Config{Endpoints: []EndpointConfig{ep}, ShutdownTimeout: time.Second}, testLogger(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(samples)) * 24)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w.Append(samples)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(samples)), "ns/sample")
}

// BenchmarkCompress compares the two snappy block encoders on a real batch;
// the relay uses s2.EncodeSnappy (see encoder.compress).
func BenchmarkCompress(b *testing.B) {
	samples, _, _ := benchSamples(b)
	var e encoder
	e.marshal(samples)
	raw := e.raw
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
			reportPerSample(b, wire)
		})
	}
}
