// Package conntrack has the dialer API of github.com/mwitkow/go-conntrack
// without its tracing and metrics (see README.md for why the relay replaces
// it). A dialer made here calls the dial function it is given and nothing
// else.
package conntrack

import (
	"context"
	"net"
)

type dialerOpts struct {
	name string
	dial func(context.Context, string, string) (net.Conn, error)
}

type dialerOpt func(*dialerOpts)

type dialerNameKey struct{}

// DialWithName names the dialer. The name is kept for DialNameFromContext
// callers only: nothing is counted under it.
func DialWithName(name string) dialerOpt {
	return func(o *dialerOpts) { o.name = name }
}

// DialWithoutMonitoring is accepted for compatibility; there is no monitoring.
func DialWithoutMonitoring() dialerOpt { return func(*dialerOpts) {} }

// DialWithTracing is accepted for compatibility; there is no tracing.
func DialWithTracing() dialerOpt { return func(*dialerOpts) {} }

// DialWithDialer dials with d.
func DialWithDialer(d *net.Dialer) dialerOpt {
	return DialWithDialContextFunc(d.DialContext)
}

// DialWithDialContextFunc dials with f instead of a zero net.Dialer.
func DialWithDialContextFunc(f func(context.Context, string, string) (net.Conn, error)) dialerOpt {
	return func(o *dialerOpts) { o.dial = f }
}

// DialNameFromContext returns the dialer name DialNameToContext put in ctx, if any.
func DialNameFromContext(ctx context.Context) string {
	s, _ := ctx.Value(dialerNameKey{}).(string)
	return s
}

// DialNameToContext returns ctx carrying a dialer name.
func DialNameToContext(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, dialerNameKey{}, name)
}

// PreRegisterDialerMetrics is accepted for compatibility; there are no metrics.
func PreRegisterDialerMetrics(string) {}

// NewDialContextFunc returns the configured dial function, for
// http.Transport.DialContext.
func NewDialContextFunc(opts ...dialerOpt) func(context.Context, string, string) (net.Conn, error) {
	o := dialerOpts{name: "default", dial: (&net.Dialer{}).DialContext}
	for _, f := range opts {
		f(&o)
	}
	return o.dial
}

// NewDialFunc is NewDialContextFunc without a context.
func NewDialFunc(opts ...dialerOpt) func(string, string) (net.Conn, error) {
	dial := NewDialContextFunc(opts...)
	return func(network, addr string) (net.Conn, error) {
		return dial(context.Background(), network, addr)
	}
}
