package remotewrite

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/klauspost/compress/s2"
)

// encoder builds the body of a remote-write request by hand: a
// prompb.WriteRequest whose TimeSeries are copied from the pre-encoded
// Series.Labels, with the external labels merged in name order. It keeps its
// buffers between batches, so a shard's steady state allocates nothing.
// An encoder serves one goroutine.
type encoder struct {
	raw []byte // the uncompressed WriteRequest
	out []byte // the snappy block of raw
}

// encode encodes samples and returns the snappy-compressed request body, which
// stays valid until the next call, and how many samples it holds. Samples of
// malformed series are left out and counted in invalid.
func (e *encoder) encode(samples []Sample) (body []byte, n, invalid int) {
	n, invalid = e.marshal(samples)
	if n == 0 {
		return nil, 0, invalid
	}
	return e.compress(), n, invalid
}

// marshal encodes the WriteRequest into e.raw.
func (e *encoder) marshal(samples []Sample) (n, invalid int) {
	raw := e.raw[:0]
	for i := range samples {
		var ok bool
		raw, ok = e.appendTimeSeries(raw, &samples[i])
		if ok {
			n++
		} else {
			invalid++
		}
	}
	e.raw = raw
	return n, invalid
}

// compress snappy-encodes e.raw (block format, as the protocol requires).
// klauspost/compress's s2.EncodeSnappy writes the same snappy block format as
// golang/snappy (the tests decode every body with golang/snappy), about 30%
// faster and about 28% smaller on cAdvisor batches: BenchmarkCompress.
func (e *encoder) compress() []byte {
	// EncodeSnappy uses out only if it is large enough; size it so it is.
	if need := s2.MaxEncodedLen(len(e.raw)); cap(e.out) < need {
		e.out = make([]byte, need)
	}
	e.out = s2.EncodeSnappy(e.out[:cap(e.out)], e.raw)
	return e.out
}

// appendTimeSeries appends one WriteRequest.timeseries (field 1) holding the
// sample's labels and the sample. A series whose labels break the rules
// receivers enforce (LabelInterner.Intern checked them) is left out, and
// false returned: one broken series must not make the receiver reject a
// whole batch.
func (e *encoder) appendTimeSeries(dst []byte, s *Sample) ([]byte, bool) {
	if !s.Ref.Valid() {
		return dst, false
	}
	size := s.Table.EncodedLen(s.Ref) + sampleLen(s.T)
	dst = append(dst, 0x0a)
	dst = binary.AppendUvarint(dst, uint64(size))
	dst = s.Table.AppendEncoded(dst, s.Ref)
	return appendSample(dst, s.T, s.V), true
}

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

// less reports whether a sorts before b. Label names are short and usually
// differ early, where a plain loop beats bytes.Compare's call overhead.
func less(a, b []byte) bool {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

// ValidateSeries checks that a series follows the rules every receiver
// enforces: well-formed encoding, labels sorted by name without duplicates,
// valid (legacy) names, no empty values, and a __name__ label. Producers of
// samples can use it in tests.
func ValidateSeries(t *LabelTable, ref SeriesRef) error {
	var prev []byte
	hasName := false
	enc := t.AppendEncoded(nil, ref)
	for off := 0; off < len(enc); {
		name, value, size, ok := parseLabel(enc[off:])
		switch {
		case !ok:
			return fmt.Errorf("malformed label encoding at byte %d", off)
		case !isValidLabelName(string(name)):
			return fmt.Errorf("invalid label name %q", name)
		case len(value) == 0:
			return fmt.Errorf("label %q has an empty value", name)
		case prev != nil && bytes.Equal(prev, name):
			return fmt.Errorf("duplicate label %q", name)
		case prev != nil && bytes.Compare(prev, name) > 0:
			return fmt.Errorf("label %q after %q: labels not sorted by name", name, prev)
		}
		if string(name) == "__name__" {
			hasName = true
		}
		prev = name
		off += size
	}
	if !hasName {
		return errors.New("no __name__ label")
	}
	return nil
}
