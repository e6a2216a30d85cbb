package scrape

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"syscall"
)

// readChunk is how much one read from a scrape connection may take from the
// socket. crypto/tls asks for one record at a time (at most about 16 KiB), so
// without a buffer below it a 2 MB cAdvisor body costs well over a hundred
// read syscalls; with one, a handful.
const readChunk = 256 << 10

var readChunks = sync.Pool{New: func() any { return new([readChunk]byte) }}

// DialBuffered returns a dial function for scrape connections whose reads
// from the socket are up to readChunk bytes. The buffer is taken from a pool
// only once data has arrived, and returned as soon as it is drained: an idle
// keep-alive connection (one per node, its HTTP client blocked in a read
// waiting for the server to close it) holds none.
func DialBuffered(d *net.Dialer) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		sc, ok := c.(syscall.Conn)
		if !ok {
			return c, nil
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return c, nil
		}
		return &bufferedConn{Conn: c, raw: rc}, nil
	}
}

// bufferedConn is a net.Conn whose reads go through a pooled buffer. Reads
// are not concurrent (one TLS or HTTP reader per connection); Close may be.
//
// Under TLS, a read ends at the end of a TLS record: crypto/tls reads into
// its record buffer all that one read gives, and that buffer keeps the
// largest size it ever had for the life of the connection, idle between
// scrapes included. Given several records at a time it grows to a few
// times a record's size; given one, it stays at one record's.
type bufferedConn struct {
	net.Conn
	raw  syscall.RawConn
	buf  *[readChunk]byte
	r, w int
	// The TLS record being read: left of its bytes (header included) not
	// yet returned, or, at its start, the hdrN bytes of its header already
	// returned. notTLS: the stream did not start with a TLS record header
	// (plain HTTP): reads are not bounded.
	left   int
	hdr    [tlsHeaderLen]byte
	hdrN   int
	notTLS bool
}

// TLS record header: content type, protocol version, length.
const (
	tlsHeaderLen = 5
	// The longest record a peer may send (TLS 1.2's ciphertext limit).
	tlsMaxRecord = 16384 + 2048
)

func (c *bufferedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.r == c.w {
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	if !c.notTLS {
		p = p[:min(len(p), c.recordLeft())]
	}
	n := copy(p, c.buf[c.r:c.w])
	if !c.notTLS {
		c.track(p[:n])
	}
	c.r += n
	if c.r == c.w {
		c.release()
	}
	return n, nil
}

// recordLeft is how many of the buffered bytes belong to the current TLS
// record (all of them if they do not hold the rest of its header).
func (c *bufferedConn) recordLeft() int {
	if c.left > 0 {
		return c.left
	}
	avail := c.buf[c.r:c.w]
	need := tlsHeaderLen - c.hdrN
	if len(avail) < need {
		return len(avail)
	}
	h := c.hdr
	copy(h[c.hdrN:], avail[:need])
	n, ok := tlsRecordLen(h)
	if !ok {
		return len(avail) // track sets notTLS
	}
	return need + n
}

// track follows the TLS records through b, just returned.
func (c *bufferedConn) track(b []byte) {
	for len(b) > 0 {
		if c.left > 0 {
			k := min(c.left, len(b))
			c.left -= k
			b = b[k:]
			continue
		}
		k := copy(c.hdr[c.hdrN:], b)
		c.hdrN += k
		b = b[k:]
		if c.hdrN < tlsHeaderLen {
			return
		}
		n, ok := tlsRecordLen(c.hdr)
		if !ok {
			c.notTLS = true
			return
		}
		c.left, c.hdrN = n, 0
	}
}

// tlsRecordLen is the length of the record body that header h announces;
// ok is false if h is not a TLS record header (a content type from
// change_cipher_spec to heartbeat, version 3.x).
func tlsRecordLen(h [tlsHeaderLen]byte) (n int, ok bool) {
	n = int(binary.BigEndian.Uint16(h[3:]))
	return n, h[0] >= 20 && h[0] <= 24 && h[1] == 3 && n <= tlsMaxRecord
}

// fill waits, holding no buffer, until the socket is readable (or the read
// deadline passes), then reads what is there into a pooled buffer.
func (c *bufferedConn) fill() error {
	var n int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		buf := readChunks.Get().(*[readChunk]byte)
		for {
			n, rerr = syscall.Read(int(fd), buf[:])
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			readChunks.Put(buf)
			return false // wait for the poller
		}
		if n <= 0 {
			readChunks.Put(buf)
			return true
		}
		c.buf = buf
		return true
	})
	switch {
	case err != nil:
		return err // deadline passed, connection closed
	case rerr != nil:
		return &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: rerr}
	case n == 0:
		return io.EOF
	}
	c.r, c.w = 0, n
	return nil
}

func (c *bufferedConn) release() {
	if c.buf != nil {
		readChunks.Put(c.buf)
		c.buf = nil
	}
	c.r, c.w = 0, 0
}
