package model

import (
	"encoding/binary"
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
	rest        runCursor
	b           []byte
	Name, Value []byte
	err         bool
}

// Next advances to the next label; it returns false at the end or on malformed input.
func (it *LabelIter) Next() bool {
	if it.table != nil && len(it.b) == 0 {
		switch {
		case it.hasFirst:
			it.b, it.hasFirst = it.table.Symbol(it.first), false
		default:
			if s, ok := it.rest.next(); ok {
				it.b = it.table.Symbol(s)
			}
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

// parseLabel parses one TimeSeries.labels field (a prompb.Label message) at
// the start of b, returning its name, value and encoded size.
func parseLabel(b []byte) (name, value []byte, size int, ok bool) {
	// Fast path for the common shape, as AppendLabel writes it: name then
	// value, every length below 128 (one-byte varints).
	if len(b) >= 6 && b[0] == 0x0a && b[1] < 0x80 && b[2] == 0x0a && b[3] < 0x80 {
		n, nl := int(b[1]), int(b[3])
		if n <= len(b)-2 && 4+nl+2 <= 2+n && b[4+nl] == 0x12 && b[5+nl] < 0x80 && 6+nl+int(b[5+nl]) == 2+n {
			return b[4 : 4+nl], b[6+nl : 2+n], 2 + n, true
		}
	}
	return parseLabelSlow(b)
}

// parseLabelSlow is parseLabel for any valid encoding.
func parseLabelSlow(b []byte) (name, value []byte, size int, ok bool) {
	if len(b) < 2 || b[0] != 0x0a {
		return nil, nil, 0, false
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b)-1-k) {
		return nil, nil, 0, false
	}
	msg := b[1+k : 1+k+int(n)]
	for len(msg) > 0 {
		tag := msg[0]
		l, k := binary.Uvarint(msg[1:])
		if k <= 0 || l > uint64(len(msg)-1-k) {
			return nil, nil, 0, false
		}
		field := msg[1+k : 1+k+int(l)]
		switch tag {
		case 0x0a:
			name = field
		case 0x12:
			value = field
		default:
			return nil, nil, 0, false
		}
		msg = msg[1+k+int(l):]
	}
	return name, value, 1 + k + int(n), true
}
