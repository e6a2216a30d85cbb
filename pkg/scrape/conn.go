package scrape

import (
	"context"
	"net"
	"sync"
)

// readChunk is how much one read from a scrape connection may take from the
// socket. crypto/tls asks for one record at a time (at most about 16 KiB), so
// without a buffer below it a 2 MB cAdvisor body costs well over a hundred
// read syscalls; with one, a handful.
const readChunk = 256 << 10

var readChunks = sync.Pool{New: func() any { return new([readChunk]byte) }}

// DialBuffered returns a dial function for scrape connections whose reads
// from the socket are up to readChunk bytes. The buffer is taken from a pool
// when a read needs it and returned as soon as it is drained, so idle
// keep-alive connections (one per node) hold none.
func DialBuffered(d *net.Dialer) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return &bufferedConn{Conn: c}, nil
	}
}

// bufferedConn is a net.Conn whose reads go through a pooled buffer. Reads
// are not concurrent (one TLS or HTTP reader per connection); Close may be.
type bufferedConn struct {
	net.Conn
	buf  *[readChunk]byte
	r, w int
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if c.r == c.w {
		if len(p) >= readChunk {
			return c.Conn.Read(p)
		}
		if c.buf == nil {
			c.buf = readChunks.Get().(*[readChunk]byte)
		}
		n, err := c.Conn.Read(c.buf[:])
		if n <= 0 {
			c.release()
			return 0, err
		}
		c.r, c.w = 0, n
	}
	n := copy(p, c.buf[c.r:c.w])
	c.r += n
	if c.r == c.w {
		c.release()
	}
	return n, nil
}

func (c *bufferedConn) release() {
	if c.buf != nil {
		readChunks.Put(c.buf)
		c.buf = nil
	}
	c.r, c.w = 0, 0
}
