package diskqueue

import (
	"bytes"
	"testing"
)

// FuzzReadSegment reads arbitrary bytes as a segment the way the queue's
// reader does (skip a bad record, give up the rest of the segment on a bad
// length): no panic, always progress, and the buffer never grows past the
// record size limit whatever the lengths claim.
func FuzzReadSegment(f *testing.F) {
	var seg bytes.Buffer
	var hb [segHeaderSize]byte
	putSegHeader(hb[:])
	seg.Write(hb[:])
	for i := range 4 {
		h, p := rec(i, 10*i)
		var fr [frameSize + recHeaderSize]byte
		putFrame(fr[:], h, p)
		seg.Write(fr[:])
		seg.Write(p)
	}
	f.Add(seg.Bytes())
	f.Add(seg.Bytes()[:seg.Len()-7])
	f.Add([]byte{})
	f.Add([]byte("KMPQ\x01\x00\x00\x00\xff\xff\xff\xff"))
	const maxPayload = 1 << 10
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		limit := int64(len(data))
		var buf []byte
		off := int64(segHeaderSize)
		for n := 0; off < limit; n++ {
			if n > len(data) {
				t.Fatalf("no progress at offset %d", off)
			}
			_, p, next, b, err := readRecord(r, off, limit, maxPayload, buf)
			buf = b
			if cap(buf) > max(4096, maxPayload+recHeaderSize) {
				t.Fatalf("buffer grew to %d", cap(buf))
			}
			if err == nil && (len(p) > maxPayload || next <= off || next > limit) {
				t.Fatalf("record at %d: payload %d, next %d, limit %d", off, len(p), next, limit)
			}
			if next < 0 {
				break
			}
			if next <= off {
				t.Fatalf("next %d not after %d", next, off)
			}
			off = next
		}
	})
}
