package loadbench

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/fakekubelet"

	certutil "k8s.io/client-go/util/cert"
)

// Kubelet is one simulated kubelet: an HTTPS server on 127.0.0.1 serving a pre-rendered
// node exposition on /metrics/cadvisor, where per scrape only the timestamps change. It
// accepts any bearer token (it generates load; it does not test authentication) and
// refuses requests without one.
type Kubelet struct {
	Name string
	Addr string // 127.0.0.1:port
	Port int
	// Series per scrape, and Bytes about the size of one scrape.
	Series, Bytes int

	capture *fakekubelet.Capture
	// extra are the other endpoints (/metrics, /metrics/probes, /metrics/resource) by
	// path, set by ServeEndpoint before the first scrape; none by default.
	extra   map[string]*endpoint
	srv     *http.Server
	gzip    bool
	scrapes atomic.Int64
	served  atomic.Int64 // bytes written (after compression)
	bufs    *sync.Pool
	gate    *atomic.Pointer[chan struct{}]
	busy    *atomic.Int64
	// churn, once set, serves new generations of the node (churn.go).
	churn atomic.Pointer[churner]
}

type endpoint struct {
	capture *fakekubelet.Capture
	scrapes atomic.Int64
}

// ServeEndpoint makes every kubelet serve path too, kubelet i the capture caps[i] (or
// caps[0] when there is one for all). Call it before the relay starts scraping.
func (ks *Kubelets) ServeEndpoint(path string, caps []*fakekubelet.Capture) {
	for i, k := range ks.List {
		c := caps[0]
		if len(caps) == len(ks.List) {
			c = caps[i]
		}
		if k.extra == nil {
			k.extra = map[string]*endpoint{}
		}
		k.extra[path] = &endpoint{capture: c}
	}
}

// EndpointScrapes is how many times path was served (0 if it is not served).
func (k *Kubelet) EndpointScrapes(path string) int64 {
	if e := k.extra[path]; e != nil {
		return e.scrapes.Load()
	}
	return 0
}

// Scrapes is how many times /metrics/cadvisor was served.
func (k *Kubelet) Scrapes() int64 { return k.scrapes.Load() }

// ServedBytes is how many body bytes went out.
func (k *Kubelet) ServedBytes() int64 { return k.served.Load() }

// Kubelets are the running simulated kubelets.
type Kubelets struct {
	List []*Kubelet
	bufs sync.Pool
	// gate is set by hold: new scrapes wait until release closes it, so that the relay can
	// go quiet.
	gate atomic.Pointer[chan struct{}]
	// busy counts scrapes past the gate and not yet served.
	busy atomic.Int64
}

// StartKubelets starts one HTTPS server per capture, each on its own 127.0.0.1 port, with
// one self-signed certificate for 127.0.0.1. gzipOn compresses (BestSpeed) when the client
// asks for it, as real kubelets do.
func StartKubelets(names []string, captures []*fakekubelet.Capture, gzipOn bool) (*Kubelets, error) {
	cert, err := selfSigned()
	if err != nil {
		return nil, err
	}
	return StartKubeletsOn(KubeletListen{Host: "127.0.0.1", Cert: cert}, names, captures, gzipOn)
}

// KubeletListen says where the simulated kubelets listen and how they authenticate.
type KubeletListen struct {
	Host string // an address of this host
	Cert tls.Certificate
	// ClientCAs, if set, verify client certificates: a request with one that verifies (the
	// kube-apiserver's kubelet client, whose node proxy sends no bearer token) is let in.
	ClientCAs *x509.CertPool
}

// StartKubeletsOn is StartKubelets on l.Host with l.Cert.
func StartKubeletsOn(l KubeletListen, names []string, captures []*fakekubelet.Capture, gzipOn bool) (*Kubelets, error) {
	ks := &Kubelets{}
	tcfg := &tls.Config{Certificates: []tls.Certificate{l.Cert}, MinVersion: tls.VersionTLS12}
	if l.ClientCAs != nil {
		tcfg.ClientCAs, tcfg.ClientAuth = l.ClientCAs, tls.VerifyClientCertIfGiven
	}
	for i, c := range captures {
		ln, err := net.Listen("tcp", net.JoinHostPort(l.Host, "0"))
		if err != nil {
			ks.Stop()
			return nil, err
		}
		k := &Kubelet{Name: names[i], Addr: ln.Addr().String(), Port: ln.Addr().(*net.TCPAddr).Port,
			Series: c.Series, Bytes: c.Size(), capture: c, gzip: gzipOn, bufs: &ks.bufs, gate: &ks.gate, busy: &ks.busy}
		k.srv = &http.Server{Handler: k, TLSConfig: tcfg, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: nil}
		go func() { _ = k.srv.ServeTLS(ln, "", "") }()
		ks.List = append(ks.List, k)
	}
	return ks, nil
}

// scrapeCounts is every kubelet's Scrapes, in List order.
func (ks *Kubelets) scrapeCounts() []int64 {
	c := make([]int64, len(ks.List))
	for i, k := range ks.List {
		c[i] = k.Scrapes()
	}
	return c
}

// servedSince is how many scrapes the kubelets served since they had served base
// (scrapeCounts).
func (ks *Kubelets) servedSince(base []int64) int64 {
	var served int64
	for i, k := range ks.List {
		served += k.Scrapes() - base[i]
	}
	return served
}

// hold makes new scrapes wait (they are answered after release, late but not failed, as
// long as the hold is shorter than the relay's scrape timeout); scrapes already past the
// gate finish.
func (ks *Kubelets) hold() {
	g := make(chan struct{})
	ks.gate.Store(&g)
}

// inFlight is how many scrapes are being served (past the gate, not finished).
func (ks *Kubelets) inFlight() int64 { return ks.busy.Load() }

func (ks *Kubelets) release() {
	if g := ks.gate.Swap(nil); g != nil {
		close(*g)
	}
}

// Stop closes every server.
func (ks *Kubelets) Stop() {
	for _, k := range ks.List {
		_ = k.srv.Close()
	}
}

func (k *Kubelet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	c, ep := k.capture, (*endpoint)(nil)
	if r.URL.Path != "/metrics/cadvisor" {
		if ep = k.extra[r.URL.Path]; ep == nil {
			http.NotFound(w, r)
			return
		}
		c = ep.capture
	}
	k.busy.Add(1)
	defer k.busy.Add(-1)
	if g := k.gate.Load(); g != nil {
		k.busy.Add(-1)
		<-*g // the kubelets are held
		k.busy.Add(1)
	}
	if ch := k.churn.Load(); ch != nil && ep == nil {
		c = ch.capture()
	}
	bp, _ := k.bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, k.Bytes+k.Bytes/8)
		bp = &b
	}
	buf := c.AppendTo((*bp)[:0], time.Now())
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	var n int
	// Counted before the body goes out: a client that has read it must see the count.
	if ep != nil {
		ep.scrapes.Add(1)
	} else {
		k.scrapes.Add(1)
	}
	if k.gzip && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		cw := &countWriter{w: w}
		zw, _ := gzip.NewWriterLevel(cw, gzip.BestSpeed)
		_, _ = zw.Write(buf)
		_ = zw.Close()
		n = cw.n
	} else {
		w.Header().Set("Content-Length", strconv.Itoa(len(buf)))
		n, _ = w.Write(buf)
	}
	*bp = buf
	k.bufs.Put(bp)
	k.served.Add(int64(n))
}

type countWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += n
	return n, err
}

func selfSigned() (tls.Certificate, error) {
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("loadbench-kubelet", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// servedBytes sums ServedBytes over every kubelet.
func (ks *Kubelets) servedBytes() int64 {
	var n int64
	for _, k := range ks.List {
		n += k.ServedBytes()
	}
	return n
}

// waitQuiescent looks for a quiescent moment until deadline: it holds new scrapes for up
// to 3s (well under the scrape timeout) while agreed reports every 20ms whether the
// process under test and the receiver agree, then releases them for a second and tries
// again. At 500 nodes a scrape starts every 60ms: without the hold nothing is ever quiet.
func (ks *Kubelets) waitQuiescent(ctx context.Context, deadline time.Time, agreed func() bool) bool {
	for time.Now().Before(deadline) {
		ks.hold()
		quiet := false
		for hd := time.Now().Add(3 * time.Second); time.Now().Before(hd); {
			if quiet = agreed(); quiet || !sleep(ctx, 20*time.Millisecond) {
				break
			}
		}
		ks.release()
		if quiet {
			return true
		}
		if !sleep(ctx, time.Second) {
			return false
		}
	}
	return false
}

// waitTotals is waitQuiescent for a process's final totals: the receiver's
// count is read around the process's metrics (self) until it is steady and
// agreed(m, z, served) holds, served being the scrapes the kubelets served
// since base. res.Final and res.Recv get the last reading either way.
func (ks *Kubelets) waitTotals(ctx context.Context, deadline time.Time, base []int64, recv *Receiver,
	self func() (SelfMetrics, error), res *Result, agreed func(m SelfMetrics, z ReceiverStats, served int64) bool) bool {
	return ks.waitQuiescent(ctx, deadline, func() bool {
		served := ks.servedSince(base)
		m, z, steady, err := sampleSteady(recv, self)
		if err != nil {
			return false
		}
		res.Final, res.Recv = m, z
		return steady && agreed(m, z, served)
	})
}

// sampleSteady reads the process's metrics between two reads of the receiver's count;
// steady: the receiver's count did not move meanwhile.
func sampleSteady(recv *Receiver, self func() (SelfMetrics, error)) (m SelfMetrics, z ReceiverStats, steady bool, err error) {
	a := recv.Stats()
	m, err = self()
	z = recv.Stats()
	return m, z, a.Samples == z.Samples, err
}
