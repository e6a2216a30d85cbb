package scrape

import (
	"context"
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
type bufferedConn struct {
	net.Conn
	raw  syscall.RawConn
	buf  *[readChunk]byte
	r, w int
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.r == c.w {
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.buf[c.r:c.w])
	c.r += n
	if c.r == c.w {
		c.release()
	}
	return n, nil
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
