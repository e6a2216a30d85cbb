package remotewrite

import (
	"encoding/binary"
	"math"
)

// Series is the immutable identity of one enriched series, encoded once when the
// series is first seen so that sending a sample costs a copy, not a marshal.
// Values of Series are shared between the scrape loop, the /metrics view and
// every remote-write queue, so they must never be modified after creation.
type Series struct {
	// Labels is the protobuf encoding of the series' labels exactly as they
	// appear inside a prompb.TimeSeries: a run of field-1 (Label) messages,
	// sorted by label name, __name__ included, no empty values.
	Labels []byte
	// Hash identifies the series (xxhash of Labels); queues shard on it so each
	// series keeps its sample order.
	Hash uint64
}

// Sample is one value of one series, as handed to the remote-write queues.
type Sample struct {
	Series *Series
	T      int64 // milliseconds since the Unix epoch
	V      float64
}

// AppendLabel appends one prompb.Label, as field 1 of a TimeSeries, to dst.
// Callers append labels in name order.
func AppendLabel(dst []byte, name, value string) []byte {
	inner := 1 + uvarintLen(uint64(len(name))) + len(name) + 1 + uvarintLen(uint64(len(value))) + len(value)
	dst = append(dst, 0x0a) // TimeSeries.labels, field 1, wire type 2
	dst = binary.AppendUvarint(dst, uint64(inner))
	dst = append(dst, 0x0a) // Label.name
	dst = binary.AppendUvarint(dst, uint64(len(name)))
	dst = append(dst, name...)
	dst = append(dst, 0x12) // Label.value
	dst = binary.AppendUvarint(dst, uint64(len(value)))
	return append(dst, value...)
}

// LabelIter walks the labels of an encoded Series.Labels without allocating.
type LabelIter struct {
	b           []byte
	Name, Value []byte
	err         bool
}

// NewLabelIter returns an iterator over encoded labels (Series.Labels).
func NewLabelIter(b []byte) LabelIter { return LabelIter{b: b} }

// Next advances to the next label; it returns false at the end or on malformed input.
func (it *LabelIter) Next() bool {
	if len(it.b) == 0 || it.err {
		return false
	}
	if it.b[0] != 0x0a {
		it.err = true
		return false
	}
	n, k := binary.Uvarint(it.b[1:])
	if k <= 0 || uint64(len(it.b)-1-k) < n {
		it.err = true
		return false
	}
	msg := it.b[1+k : 1+k+int(n)]
	it.b = it.b[1+k+int(n):]
	it.Name, it.Value = nil, nil
	for len(msg) > 0 {
		tag := msg[0]
		l, k := binary.Uvarint(msg[1:])
		if k <= 0 || uint64(len(msg)-1-k) < l {
			it.err = true
			return false
		}
		field := msg[1+k : 1+k+int(l)]
		switch tag {
		case 0x0a:
			it.Name = field
		case 0x12:
			it.Value = field
		}
		msg = msg[1+k+int(l):]
	}
	return true
}

// Err reports whether the encoding was malformed.
func (it *LabelIter) Err() bool { return it.err }

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// appendSample appends a prompb.Sample as field 2 of a TimeSeries.
func appendSample(dst []byte, t int64, v float64) []byte {
	inner := 1 + 8
	if t != 0 {
		inner += 1 + uvarintLen(uint64(t))
	}
	dst = append(dst, 0x12, byte(inner))
	dst = append(dst, 0x09) // Sample.value, fixed64
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
	if t != 0 {
		dst = append(dst, 0x10) // Sample.timestamp, varint
		dst = binary.AppendUvarint(dst, uint64(t))
	}
	return dst
}
