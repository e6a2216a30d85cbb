package diskqueue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// On-disk format (all integers little endian).
//
// Segment file NNNNNNNNNNNNNNNNNNNN.seg (20-digit sequence number):
//
//	magic "KMPQ" | version u8 (1) | 3 zero bytes        (segHeaderSize)
//	record*
//
// Record:
//
//	length u32   bytes of header+payload
//	crc    u32   CRC32C (Castagnoli) of header+payload
//	header       samples u32 | minT i64 | maxT i64 | key u64  (recHeaderSize)
//	payload      opaque bytes (one encoded remote-write request)
//
// A record's position is the offset just past it, so a checkpoint at a
// position resumes with the record that follows.
const (
	segMagic      = "KMPQ"
	segVersion    = 1
	segHeaderSize = 8
	frameSize     = 8  // length + crc
	recHeaderSize = 28 // samples + minT + maxT + key
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is the caller's description of a record, kept next to its payload
// so that metrics (samples on disk, oldest sample) and ordering decisions
// need no decoding of the payload.
type Header struct {
	Samples uint32 // samples in the payload
	MinT    int64  // oldest sample timestamp, milliseconds
	MaxT    int64  // newest sample timestamp, milliseconds
	Key     uint64 // caller-defined (shard / series-order key)
}

func putSegHeader(b []byte) {
	copy(b, segMagic)
	b[4] = segVersion
	b[5], b[6], b[7] = 0, 0, 0
}

func checkSegHeader(b []byte) error {
	if len(b) < segHeaderSize || string(b[:4]) != segMagic {
		return errors.New("bad segment magic")
	}
	if b[4] != segVersion {
		return fmt.Errorf("unsupported segment version %d", b[4])
	}
	return nil
}

// putFrame writes the length, CRC and header of a record with the given
// payload into b (frameSize+recHeaderSize bytes).
func putFrame(b []byte, h Header, payload []byte) {
	hb := b[frameSize : frameSize+recHeaderSize]
	binary.LittleEndian.PutUint32(hb[0:], h.Samples)
	binary.LittleEndian.PutUint64(hb[4:], uint64(h.MinT))
	binary.LittleEndian.PutUint64(hb[12:], uint64(h.MaxT))
	binary.LittleEndian.PutUint64(hb[20:], h.Key)
	crc := crc32.Update(crc32.Checksum(hb, castagnoli), castagnoli, payload)
	binary.LittleEndian.PutUint32(b[0:], uint32(recHeaderSize+len(payload)))
	binary.LittleEndian.PutUint32(b[4:], crc)
}

func decodeHeader(b []byte) Header {
	return Header{
		Samples: binary.LittleEndian.Uint32(b[0:]),
		MinT:    int64(binary.LittleEndian.Uint64(b[4:])),
		MaxT:    int64(binary.LittleEndian.Uint64(b[12:])),
		Key:     binary.LittleEndian.Uint64(b[20:]),
	}
}

// Reasons records are skipped or dropped (label reason).
const (
	reasonFull    = "full"    // MaxBytes reached, oldest segment dropped
	reasonCorrupt = "corrupt" // bad CRC, bad length, bad segment header
	reasonTorn    = "torn"    // record cut short at the end of a segment
	reasonRemoved = "removed" // directory or segment removed under us
)

// recordError says why a record could not be read and where reading
// resumes: at next, or (next < 0) at the end of the segment, because a bad
// length leaves no way to find the following record.
type recordError struct {
	reason string
	msg    string
	off    int64
	next   int64
}

func (e *recordError) Error() string {
	return fmt.Sprintf("%s record at offset %d: %s", e.reason, e.off, e.msg)
}

// readRecord reads the record at off from a segment whose valid data ends
// at limit. buf is reused and grown to at most maxPayload+recHeaderSize, so
// a bogus length can never make it allocate more. The payload aliases buf.
func readRecord(r io.ReaderAt, off, limit int64, maxPayload int, buf []byte) (h Header, payload []byte, next int64, _ []byte, err error) {
	if limit-off < frameSize {
		return h, nil, -1, buf, &recordError{reasonTorn, fmt.Sprintf("%d bytes left, less than a record frame", limit-off), off, -1}
	}
	if cap(buf) < frameSize {
		buf = make([]byte, 0, 4096)
	}
	fb := buf[:frameSize]
	if _, err := r.ReadAt(fb, off); err != nil {
		return h, nil, -1, buf, &recordError{reasonTorn, "read frame: " + err.Error(), off, -1}
	}
	n := int64(binary.LittleEndian.Uint32(fb[0:]))
	crc := binary.LittleEndian.Uint32(fb[4:])
	if n < recHeaderSize || n > int64(maxPayload)+recHeaderSize {
		return h, nil, -1, buf, &recordError{reasonCorrupt, fmt.Sprintf("length %d outside [%d, %d]", n, recHeaderSize, maxPayload+recHeaderSize), off, -1}
	}
	end := off + frameSize + n
	if end > limit {
		return h, nil, -1, buf, &recordError{reasonTorn, fmt.Sprintf("length %d runs past the end of the segment (%d bytes left)", n, limit-off-frameSize), off, -1}
	}
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	body := buf[:n]
	if _, err := r.ReadAt(body, off+frameSize); err != nil {
		return h, nil, -1, buf, &recordError{reasonTorn, "read record: " + err.Error(), off, -1}
	}
	if got := crc32.Checksum(body, castagnoli); got != crc {
		return h, nil, end, buf, &recordError{reasonCorrupt, fmt.Sprintf("crc32c %08x, want %08x", got, crc), off, end}
	}
	return decodeHeader(body), body[recHeaderSize:], end, buf, nil
}
