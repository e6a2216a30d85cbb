package remotewrite

import (
	"encoding/binary"
	"math"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

	"github.com/klauspost/compress/s2"
)

// refEncoder is how requests were encoded before the label-aware encoder:
// marshal the whole WriteRequest, copying every label encoding, then
// compress it with s2.EncodeSnappy. It is the reference of the encoder
// tests (its uncompressed bytes are what a decoded body must equal) and the
// baseline of BenchmarkEncode.
type refEncoder struct {
	raw []byte // the uncompressed WriteRequest
	out []byte // the snappy block of raw
}

// encode is encoder.encode the old way.
func (e *refEncoder) encode(samples []model.Sample) (body []byte, n, invalid int) {
	n, invalid = e.marshal(samples)
	if n == 0 {
		return nil, 0, invalid
	}
	return e.compress(), n, invalid
}

// marshal encodes the WriteRequest into e.raw.
func (e *refEncoder) marshal(samples []model.Sample) (n, invalid int) {
	raw := e.raw[:0]
	for i := range samples {
		var ok bool
		raw, ok = appendTimeSeries(raw, &samples[i])
		if ok {
			n++
		} else {
			invalid++
		}
	}
	e.raw = raw
	return n, invalid
}

// compress snappy-encodes e.raw with s2.EncodeSnappy, which writes the same
// block format as golang/snappy, faster and smaller.
func (e *refEncoder) compress() []byte {
	if need := s2.MaxEncodedLen(len(e.raw)); cap(e.out) < need {
		e.out = make([]byte, need)
	}
	e.out = s2.EncodeSnappy(e.out[:cap(e.out)], e.raw)
	return e.out
}

// appendTimeSeries appends one WriteRequest.timeseries (field 1) holding the
// sample's labels and the sample, or returns false for an invalid series.
func appendTimeSeries(dst []byte, s *model.Sample) ([]byte, bool) {
	if !s.Ref.Valid() {
		return dst, false
	}
	size := s.Table.EncodedLen(s.Ref) + sampleLen(s.T)
	dst = append(dst, 0x0a)
	dst = binary.AppendUvarint(dst, uint64(size))
	dst = s.Table.AppendEncoded(dst, s.Ref)
	return appendSample(dst, s.T, s.V), true
}

// referenceRaw is the uncompressed request the samples must decode to.
func referenceRaw(samples []model.Sample) []byte {
	var e refEncoder
	e.marshal(samples)
	return e.raw
}

// appendSample appends a prompb.Sample as field 2 of a TimeSeries.
func appendSample(dst []byte, t int64, v float64) []byte {
	inner := 1 + 8
	if t != 0 {
		inner += 1 + uvarintLen(uint64(t))
	}
	dst = append(dst, 0x12, byte(inner))
	dst = append(dst, 0x09) // model.Sample.value, fixed64
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
	if t != 0 {
		dst = append(dst, 0x10) // model.Sample.timestamp, varint
		dst = binary.AppendUvarint(dst, uint64(t))
	}
	return dst
}
