package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	certutil "k8s.io/client-go/util/cert"
)

// TLSConfig returns the serving TLS configuration: the pair in certFile and
// keyFile, reloaded when either file changes (see CertReloader), or a
// self-signed pair when neither is given (as controller-runtime does for its
// secure metrics). reg may be nil.
func TLSConfig(certFile, keyFile string, logger *slog.Logger, reg prometheus.Registerer) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		cert, err := selfSigned()
		if err != nil {
			return nil, err
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("server: the serving certificate file and its private key file go together; got only one")
	}
	r, err := NewCertReloader(certFile, keyFile, logger, reg)
	if err != nil {
		return nil, err
	}
	return &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12}, nil
}

// CertReloader serves a certificate/key pair from files and loads them again
// on the first handshake after either file changed (size, modification time
// or the file itself, as when a Secret volume swaps its ..data symlink). A
// pair that does not load (say the certificate was written but the key not
// yet) is logged and counted once, and the previous pair stays in use until
// the files change again. Two stat calls per handshake are the whole cost.
type CertReloader struct {
	certFile, keyFile string
	logger            *slog.Logger
	reloads           *prometheus.CounterVec

	mu                sync.Mutex
	cert              *tls.Certificate
	certStat, keyStat os.FileInfo // of the pair in use, or of the last failed attempt
	notAfter          time.Time
	notAfterG         prometheus.Gauge
}

// NewCertReloader loads the pair once (an error if it does not load).
func NewCertReloader(certFile, keyFile string, logger *slog.Logger, reg prometheus.Registerer) (*CertReloader, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &CertReloader{certFile: certFile, keyFile: keyFile, logger: logger,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubelet_meta_proxy_server_certificate_reloads_total",
			Help: "Loads of the serving certificate after its files changed, by result (success, error: the previous pair stays in use)."}, []string{"result"}),
		notAfterG: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubelet_meta_proxy_server_certificate_expiry_timestamp_seconds",
			Help: "NotAfter of the serving certificate in use."}),
	}
	r.reloads.WithLabelValues("success")
	r.reloads.WithLabelValues("error")
	cs, ks, err := r.stat()
	if err != nil {
		return nil, err
	}
	if err := r.load(cs, ks); err != nil {
		return nil, err
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.reloads, r.notAfterG} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

func (r *CertReloader) stat() (os.FileInfo, os.FileInfo, error) {
	cs, err := os.Stat(r.certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("serving certificate file: %w", err)
	}
	ks, err := os.Stat(r.keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("serving private key file: %w", err)
	}
	return cs, ks, nil
}

func (r *CertReloader) load(cs, ks os.FileInfo) error {
	pair, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	r.certStat, r.keyStat = cs, ks
	if err != nil {
		return fmt.Errorf("serving certificate %s with key %s: %w", r.certFile, r.keyFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("serving certificate %s: %w", r.certFile, err)
	}
	pair.Leaf = leaf
	r.cert = &pair
	r.notAfter = leaf.NotAfter
	r.notAfterG.Set(float64(leaf.NotAfter.Unix()))
	return nil
}

func changed(a, b os.FileInfo) bool {
	return b == nil || a.Size() != b.Size() || !a.ModTime().Equal(b.ModTime()) || !os.SameFile(a, b)
}

// GetCertificate is the tls.Config hook.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs, ks, err := r.stat()
	if err != nil {
		// Files gone for a moment (being replaced): keep serving the pair in use.
		return r.cert, nil
	}
	if !changed(cs, r.certStat) && !changed(ks, r.keyStat) {
		return r.cert, nil
	}
	if err := r.load(cs, ks); err != nil {
		r.reloads.WithLabelValues("error").Inc()
		r.logger.Error("serving certificate not reloaded; the previous one stays in use until the files change again", "err", err)
		return r.cert, nil
	}
	r.reloads.WithLabelValues("success").Inc()
	r.logger.Info("serving certificate reloaded", "file", r.certFile, "subject", r.cert.Leaf.Subject.String(),
		"serial", r.cert.Leaf.SerialNumber.String(), "not_after", r.notAfter)
	return r.cert, nil
}

// selfSigned makes the serving pair used without a certificate file:
// client-go's helper, as kube-apiserver and the kubelet do for the same case.
func selfSigned() (tls.Certificate, error) {
	host, _ := os.Hostname()
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(host, nil, []string{"localhost", "kubelet-meta-proxy"})
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed serving certificate: %w", err)
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}
