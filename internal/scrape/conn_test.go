package scrape

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/captures"
)

func TestBufferedConnReadsEverythingAndHoldsNoBufferWhenDrained(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := make([]byte, 3*readChunk+12345)
	_, _ = rand.Read(want)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for rest := want; len(rest) > 0; {
			n := min(len(rest), 70000)
			_, _ = c.Write(rest[:n])
			rest = rest[n:]
		}
	}()
	nc, err := DialBuffered(&net.Dialer{})(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	bc := nc.(*bufferedConn)
	var got bytes.Buffer
	p := make([]byte, 16<<10+5) // what crypto/tls asks for: about a record
	for {
		n, err := bc.Read(p)
		got.Write(p[:n])
		if bc.r == bc.w && bc.buf != nil {
			t.Fatal("a drained connection still holds its read buffer")
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("read %d bytes, not the %d written", got.Len(), len(want))
	}
}

func TestBufferedConnHonoursTheReadDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			time.Sleep(2 * time.Second)
		}
	}()
	nc, err := DialBuffered(&net.Dialer{})(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err = nc.Read(make([]byte, 10))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
}

// readLog records what every read of the connection below it returned.
type readLog struct {
	net.Conn
	reads [][]byte
}

func (c *readLog) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.reads = append(c.reads, bytes.Clone(p[:n]))
	return n, err
}

// captureServer serves a real cAdvisor capture over TLS or plain HTTP.
func captureServer(t testing.TB, tlsOn bool) (*httptest.Server, []byte) {
	body, err := captures.Read("1_35")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// Writes of every size, so that records and socket reads fall
		// anywhere in the body.
		for rest, k := body, 1; len(rest) > 0; k = k*7%40000 + 1 {
			n := min(len(rest), k)
			_, _ = w.Write(rest[:n])
			rest = rest[n:]
		}
	}))
	if tlsOn {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, body
}

func clientOver(srv *httptest.Server, wrap func(net.Conn) net.Conn) *http.Client {
	dial := DialBuffered(&net.Dialer{})
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return wrap(c), nil
		},
	}
	return &http.Client{Transport: tr}
}

func get(t testing.TB, c *http.Client, url string) []byte {
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Under TLS no read of a scrape connection goes past the end of a record
// (crypto/tls would keep a buffer of several records' size per connection
// for as long as it is open); plain HTTP reads are not bounded; both read
// the body whole.
func TestBufferedConnReadsOneTLSRecordAtATime(t *testing.T) {
	for _, tlsOn := range []bool{true, false} {
		srv, want := captureServer(t, tlsOn)
		var log *readLog
		c := clientOver(srv, func(nc net.Conn) net.Conn { log = &readLog{Conn: nc}; return log })
		for range 2 { // the second on the kept-alive connection
			if got := get(t, c, srv.URL); !bytes.Equal(got, want) {
				t.Fatalf("TLS %v: read %d bytes, not the %d served", tlsOn, len(got), len(want))
			}
		}
		var stream []byte
		longest := 0
		for _, r := range log.reads {
			stream = append(stream, r...)
			longest = max(longest, len(r))
		}
		if !tlsOn {
			if longest <= tlsMaxRecord+tlsHeaderLen {
				t.Errorf("plain HTTP: the longest read was %d bytes, not more than a TLS record", longest)
			}
			continue
		}
		// The record each byte of the stream is in.
		rec := make([]int, len(stream))
		for i, k := 0, 0; i < len(stream); k++ {
			n, ok := tlsRecordLen([tlsHeaderLen]byte(stream[i : i+tlsHeaderLen]))
			if !ok {
				t.Fatalf("byte %d of the stream is not a TLS record header", i)
			}
			for j := i; j < i+tlsHeaderLen+n; j++ {
				rec[j] = k
			}
			i += tlsHeaderLen + n
		}
		off := 0
		for i, r := range log.reads {
			if len(r) > 0 && rec[off] != rec[off+len(r)-1] {
				t.Fatalf("read %d (bytes %d-%d of the stream) spans records %d to %d", i, off, off+len(r), rec[off], rec[off+len(r)-1])
			}
			off += len(r)
		}
	}
}

// BenchmarkIdleTLSConn is the heap a kept-alive TLS scrape connection holds
// between scrapes, after serving a real cAdvisor payload.
func BenchmarkIdleTLSConn(b *testing.B) {
	const conns = 50
	srv, _ := captureServer(b, true)
	b.ReportAllocs()
	for b.Loop() {
		clients := make([]*http.Client, conns)
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range clients {
			clients[i] = clientOver(srv, func(nc net.Conn) net.Conn { return nc })
			get(b, clients[i], srv.URL)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/conns, "B/conn")
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}
}
