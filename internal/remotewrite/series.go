package remotewrite

import (
	"encoding/binary"
	"math"
	"math/bits"
)

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

// LabelIter walks labels without allocating: those of a series in a
// LabelTable, or a run of encoded labels.
type LabelIter struct {
	table       *LabelTable
	first       uint32
	hasFirst    bool
	rest        []uint32
	b           []byte
	Name, Value []byte
	err         bool
}

// NewLabelIter returns an iterator over a run of encoded labels.
func NewLabelIter(b []byte) LabelIter { return LabelIter{b: b} }

// Next advances to the next label; it returns false at the end or on malformed input.
func (it *LabelIter) Next() bool {
	if it.table != nil && len(it.b) == 0 {
		switch {
		case it.hasFirst:
			it.b, it.hasFirst = it.table.Symbol(it.first), false
		case len(it.rest) > 0:
			it.b, it.rest = it.table.Symbol(it.rest[0]), it.rest[1:]
		}
	}
	if len(it.b) == 0 || it.err {
		return false
	}
	name, value, size, ok := parseLabel(it.b)
	if !ok {
		it.err = true
		return false
	}
	it.Name, it.Value, it.b = name, value, it.b[size:]
	return true
}

// Err reports whether the encoding was malformed.
func (it *LabelIter) Err() bool { return it.err }

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// sampleLen is the size of a prompb.Sample as field 2 of a TimeSeries.
func sampleLen(t int64) int {
	n := 2 + 1 + 8
	if t != 0 {
		n += 1 + uvarintLen(uint64(t))
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
