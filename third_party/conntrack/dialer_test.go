package conntrack

import (
	"context"
	"errors"
	"net"
	"testing"
)

func TestDialerCallsTheGivenFunction(t *testing.T) {
	want := errors.New("dialed")
	var got []string
	dial := NewDialContextFunc(
		DialWithDialContextFunc(func(_ context.Context, network, addr string) (net.Conn, error) {
			got = append(got, network+" "+addr)
			return nil, want
		}),
		DialWithTracing(),
		DialWithName("remote_write"),
	)
	if _, err := dial(context.Background(), "tcp", "example.invalid:1"); !errors.Is(err, want) {
		t.Fatalf("dial: %v, want the given function's error", err)
	}
	if len(got) != 1 || got[0] != "tcp example.invalid:1" {
		t.Fatalf("the given function saw %q", got)
	}
}

func TestDefaultDialerConnects(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := NewDialFunc(DialWithName("x"))("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dial %s: %v", l.Addr(), err)
	}
	c.Close()
}

func TestDialName(t *testing.T) {
	ctx := DialNameToContext(context.Background(), "a")
	if n := DialNameFromContext(ctx); n != "a" {
		t.Fatalf("DialNameFromContext = %q, want a", n)
	}
	if n := DialNameFromContext(context.Background()); n != "" {
		t.Fatalf("DialNameFromContext of a bare context = %q, want empty", n)
	}
}
