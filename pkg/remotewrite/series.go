package remotewrite

import (
	"encoding/binary"
	"math"
	"sync/atomic"
	"unique"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// Series is the immutable identity of one enriched series, encoded once when the
// series is first seen so that sending a sample costs a copy, not a marshal.
// Values of Series are shared between the scrape loop, the /metrics view and
// every remote-write queue, so they must never be modified after creation.
type Series struct {
	// labels holds, in name order, each label's protobuf encoding exactly as
	// it appears inside a prompb.TimeSeries (one field-1 Label message).
	// Each encoding is interned: the ~50 series of one container share their
	// long labels (id, image, name, pod, namespace) and the target's, so a
	// series costs a slice of handles rather than ~450 bytes of its own.
	labels []unique.Handle[string]
	// Hash identifies the series (xxhash of its whole encoding); queues shard
	// on it so each series keeps its sample order.
	Hash uint64
	// valid memoizes the encoder's check of the label rules (0 not checked
	// yet, 1 valid, 2 invalid), so a series is checked once, not per sample.
	valid atomic.Uint32
}

// NewSeries builds a Series from the encoding of its labels: a run of
// field-1 Label messages as AppendLabel writes them, sorted by name. Malformed
// input is kept as it is (the encoder then refuses the series).
func NewSeries(encoded []byte) *Series {
	s := &Series{Hash: xxhash.Sum64(encoded)}
	n := 0
	for rest := encoded; len(rest) > 0; n++ {
		size := labelSize(rest)
		if size <= 0 {
			break
		}
		rest = rest[size:]
	}
	s.labels = make([]unique.Handle[string], 0, n+1)
	for rest := encoded; len(rest) > 0; {
		size := labelSize(rest)
		if size <= 0 {
			size = len(rest) // malformed: keep the rest whole
		}
		s.labels = append(s.labels, unique.Make(string(rest[:size])))
		rest = rest[size:]
	}
	return s
}

// labelSize is the length of the field-1 message at the start of b, or 0.
func labelSize(b []byte) int {
	if len(b) < 2 || b[0] != 0x0a {
		return 0
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b)-1-k) {
		return 0
	}
	return 1 + k + int(n)
}

// AppendEncoded appends the series' whole label encoding (as it goes inside
// a prompb.TimeSeries) to dst.
func (s *Series) AppendEncoded(dst []byte) []byte {
	for _, h := range s.labels {
		dst = append(dst, h.Value()...)
	}
	return dst
}

// Equal reports whether two series have the same labels. Interned
// encodings compare as handles: no bytes are read.
func (s *Series) Equal(o *Series) bool {
	if s.Hash != o.Hash || len(s.labels) != len(o.labels) {
		return false
	}
	for i := range s.labels {
		if s.labels[i] != o.labels[i] {
			return false
		}
	}
	return true
}

// NumLabels is the number of labels.
func (s *Series) NumLabels() int { return len(s.labels) }

// EncodedLabel is the encoding of the i-th label (a field-1 Label message).
func (s *Series) EncodedLabel(i int) string { return s.labels[i].Value() }

// Labels returns an iterator over the series' labels.
func (s *Series) Labels() LabelIter { return LabelIter{series: s} }

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

// LabelIter walks labels without allocating: those of a Series, or a run of
// encoded labels.
type LabelIter struct {
	series      *Series
	next        int
	b           []byte
	Name, Value []byte
	err         bool
}

// NewLabelIter returns an iterator over a run of encoded labels.
func NewLabelIter(b []byte) LabelIter { return LabelIter{b: b} }

// Next advances to the next label; it returns false at the end or on malformed input.
func (it *LabelIter) Next() bool {
	if it.series != nil && len(it.b) == 0 && it.next < len(it.series.labels) {
		v := it.series.labels[it.next].Value()
		it.b = unsafe.Slice(unsafe.StringData(v), len(v)) // read-only
		it.next++
	}
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
