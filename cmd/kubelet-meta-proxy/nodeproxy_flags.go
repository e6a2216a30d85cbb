package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
)

// Protocols of --node-proxy-protocol: the ALPN names.
const (
	proxyHTTP1 = "http/1.1"
	proxyHTTP2 = "h2"
)

// nodeProxyOptions say how the relay talks to the kube-apiserver's node
// proxy in apiserver mode (the REST client the scrapes go through; informers
// keep client-go's defaults). The defaults come from the 50x30 load test in
// apiserver mode (e2e/loadbench/README.md, "Apiserver mode").
type nodeProxyOptions struct {
	Protocol string
	Gzip     bool

	fs *pflag.FlagSet // to tell a flag set from a default
}

func (o *nodeProxyOptions) AddFlags(fs *pflag.FlagSet) {
	o.fs = fs
	fs.StringVar(&o.Protocol, "node-proxy-protocol", proxyHTTP1,
		`Protocol of the scrapes through the kube-apiserver's node proxy (apiserver mode): "http/1.1" (one connection per scrape in flight) or "h2" (all scrapes multiplexed on one connection, client-go's default).`)
	fs.BoolVar(&o.Gzip, "node-proxy-gzip", false,
		"Ask for gzip through the node proxy (apiserver mode): kubelets compress, the apiserver passes it through, the relay inflates; 7x less traffic, more CPU on kubelets and the relay. Without it the relay asks for identity, so that the apiserver does not ask the kubelet for gzip and inflate it itself.")
}

func (o *nodeProxyOptions) Validate() error {
	if o.Protocol != proxyHTTP1 && o.Protocol != proxyHTTP2 {
		return fmt.Errorf("--node-proxy-protocol=%q: want %q or %q", o.Protocol, proxyHTTP1, proxyHTTP2)
	}
	return nil
}

// apply sets the protocol and compression on cfg, the node proxy client's
// config (a copy). client-go enables HTTP/2 unless NextProtos leaves it out.
func (o *nodeProxyOptions) apply(cfg *rest.Config) *rest.Config {
	if o.Protocol == proxyHTTP1 {
		cfg.NextProtos = []string{proxyHTTP1}
	} else {
		cfg.NextProtos = nil
	}
	cfg.DisableCompression = !o.Gzip
	if !o.Gzip {
		// Without an Accept-Encoding the apiserver's own transport to the
		// kubelet asks for gzip and inflates the answer for us, at several
		// milliseconds of apiserver CPU per scrape.
		cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return identityTransport{rt} })
	}
	// Socket reads of up to 256 KiB under TLS, as in kubelet mode, rather than one
	// record's.
	cfg.Dial = scrape.DialBuffered(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second})
	return cfg
}

// identityTransport asks for the identity encoding, unless the request says.
type identityTransport struct{ next http.RoundTripper }

func (t identityTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Accept-Encoding") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Accept-Encoding", "identity")
	}
	return t.next.RoundTrip(r)
}

// logIgnored warns about node proxy flags set in kubelet mode, where no
// scrape goes through the apiserver.
func (o *nodeProxyOptions) logIgnored(logger *slog.Logger, mode string) {
	if mode == modeAPIServer || o.fs == nil {
		return
	}
	for _, f := range []string{"node-proxy-protocol", "node-proxy-gzip"} {
		if o.fs.Changed(f) {
			logger.Warn("--"+f+" applies to --mode=apiserver only: ignored", "mode", mode)
		}
	}
}
