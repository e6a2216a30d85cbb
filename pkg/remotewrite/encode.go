package remotewrite

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/golang/snappy"
)

// externalLabel is an external label with its prompb encoding precomputed.
type externalLabel struct {
	name string
	enc  []byte // AppendLabel(nil, name, value)
}

func newExternalLabels(ls []Label) []externalLabel {
	out := make([]externalLabel, len(ls))
	for i, l := range ls {
		out[i] = externalLabel{name: l.Name, enc: AppendLabel(nil, l.Name, l.Value)}
	}
	return out
}

// encoder builds the body of a remote-write request by hand: a
// prompb.WriteRequest whose TimeSeries are copied from the pre-encoded
// Series.Labels, with the external labels merged in name order. It keeps its
// buffers between batches, so a shard's steady state allocates nothing.
// An encoder serves one goroutine.
type encoder struct {
	external []externalLabel
	raw      []byte // the uncompressed WriteRequest
	out      []byte // the snappy block of raw
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
func (e *encoder) compress() []byte {
	// snappy.Encode uses out only if it is large enough; size it so it is.
	if need := snappy.MaxEncodedLen(len(e.raw)); cap(e.out) < need {
		e.out = make([]byte, need)
	}
	e.out = snappy.Encode(e.out[:cap(e.out)], e.raw)
	return e.out
}

// appendTimeSeries appends one WriteRequest.timeseries (field 1) holding the
// sample's labels and the sample. If the series' labels are malformed (not
// sorted by name, duplicate or empty names, empty values, no __name__) it
// leaves dst unchanged and returns false: one broken series must not make the
// receiver reject a whole batch.
func (e *encoder) appendTimeSeries(dst []byte, s *Sample) ([]byte, bool) {
	start := len(dst)
	// The TimeSeries length goes before its content; most fit a 2-byte
	// varint (128 B to 16 KiB), so reserve that and fix it up if wrong.
	dst = append(dst, 0x0a, 0, 0)
	body := len(dst)
	dst, ok := e.appendLabels(dst, s.Series.Labels)
	if !ok {
		return dst[:start], false
	}
	dst = appendSample(dst, s.T, s.V)
	size := len(dst) - body
	if w := uvarintLen(uint64(size)); w != 2 {
		// Move the content so the length varint fits exactly.
		if w > 2 {
			dst = append(dst, make([]byte, w-2)...)
		}
		copy(dst[body+w-2:], dst[body:body+size])
		dst = dst[:body+w-2+size]
	}
	binary.PutUvarint(dst[start+1:], uint64(size))
	return dst, true
}

// appendLabels copies the encoded labels to dst, inserting the external labels
// in name order (a series' own label of the same name wins), and checks the
// label rules on the way. Runs of series labels are copied in one go.
func (e *encoder) appendLabels(dst, labels []byte) ([]byte, bool) {
	ext := e.external
	var prev []byte
	hasName := false
	run := 0 // start of the series labels not yet copied
	for off := 0; off < len(labels); {
		name, value, size, ok := parseLabel(labels[off:])
		if !ok || len(name) == 0 || len(value) == 0 || (prev != nil && !less(prev, name)) {
			return dst, false
		}
		if !hasName && string(name) == "__name__" {
			hasName = true
		}
		if len(ext) > 0 && ext[0].name <= string(name) {
			dst = append(dst, labels[run:off]...)
			run = off
			for len(ext) > 0 && ext[0].name < string(name) {
				dst = append(dst, ext[0].enc...)
				ext = ext[1:]
			}
			if len(ext) > 0 && ext[0].name == string(name) {
				ext = ext[1:] // the series' own label wins
			}
		}
		prev = name
		off += size
	}
	if !hasName {
		return dst, false
	}
	dst = append(dst, labels[run:]...)
	for _, l := range ext {
		dst = append(dst, l.enc...)
	}
	return dst, true
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

// ValidateSeries checks that s follows the rules every receiver enforces:
// well-formed encoding, labels sorted by name without duplicates, valid
// (legacy) names, no empty values, and a __name__ label. The writer checks all
// but the name characters on its own; producers of Series can use this in
// tests.
func ValidateSeries(s *Series) error {
	var prev []byte
	hasName := false
	for off := 0; off < len(s.Labels); {
		name, value, size, ok := parseLabel(s.Labels[off:])
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
