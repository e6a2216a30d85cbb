// Package server serves the relay's local endpoint: the enriched /metrics
// view, the relay's own metrics, and health checks, over plain HTTP or, with
// secure serving on, over HTTPS with Kubernetes authentication and
// authorization as kube-rbac-proxy and controller-runtime do.
package server

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
)

// Paths of the local endpoint.
const (
	PathMetrics     = "/metrics"
	PathSelfMetrics = "/metrics/self"
	PathHealthz     = "/healthz"
	PathReadyz      = "/readyz"
	PathReload      = "/-/reload"
)

// Authorizer decides whether a request may read the metrics. It is nil when
// the endpoint is not secure. reason is shown to the caller: it must not
// carry internal detail. An Authorizer that also has a Ready() error method
// (KubeAuthorizer) takes part in /readyz.
type Authorizer interface {
	Authorize(ctx context.Context, r *http.Request) (status int, reason string)
}

type readyReporter interface{ Ready() error }

// Config is what the server needs.
type Config struct {
	Address    string
	View       *view.View
	Gatherer   prometheus.Gatherer
	Ready      func() error // nil error when ready to serve
	TLS        *tls.Config  // nil: plain HTTP
	Authorizer Authorizer   // nil: no authentication
	Logger     *slog.Logger
	// Reload, if not nil, re-reads the configuration on POST /-/reload, as
	// Prometheus does; its error is the response.
	Reload func() error
}

// Server is the local HTTP(S) endpoint.
type Server struct {
	cfg Config
	srv *http.Server
	gz  sync.Pool
}

// New returns a server; Run starts it.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg}
	s.gz.New = func() any { w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed); return w }
	mux := http.NewServeMux()
	mux.Handle(PathMetrics, s.protect(http.HandlerFunc(s.serveView)))
	mux.Handle(PathSelfMetrics, s.protect(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{EnableOpenMetrics: false})))
	mux.HandleFunc(PathHealthz, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc(PathReadyz, func(w http.ResponseWriter, _ *http.Request) {
		err := cfg.Ready()
		if rr, ok := cfg.Authorizer.(readyReporter); ok && err == nil {
			err = rr.Ready()
		}
		if err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if cfg.Reload != nil {
		mux.Handle(PathReload, s.protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost && r.Method != http.MethodPut {
				w.Header().Set("Allow", "POST, PUT")
				http.Error(w, "only POST or PUT requests allowed", http.StatusMethodNotAllowed)
				return
			}
			if err := cfg.Reload(); err != nil {
				http.Error(w, "failed to reload config: "+err.Error(), http.StatusInternalServerError)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		})))
	}
	s.srv = &http.Server{
		Addr:              cfg.Address,
		Handler:           mux,
		TLSConfig:         cfg.TLS,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return s
}

// Run serves until ctx is done, then shuts down gracefully.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() {
		if s.cfg.TLS != nil {
			errc <- s.srv.ServeTLS(ln, "", "")
		} else {
			errc <- s.srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := s.srv.Shutdown(sctx)
		if e := <-errc; e != nil && !errors.Is(e, http.ErrServerClosed) {
			return e
		}
		return err
	}
}

func (s *Server) protect(h http.Handler) http.Handler {
	if s.cfg.Authorizer == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, reason := s.cfg.Authorizer.Authorize(r.Context(), r)
		switch {
		case code == http.StatusOK:
			h.ServeHTTP(w, r)
			return
		case code == http.StatusUnauthorized:
			w.Header().Set("WWW-Authenticate", `Bearer realm="kubelet-meta-proxy"`)
		case code == http.StatusTooManyRequests:
			w.Header().Set("Retry-After", "1")
		case code >= 500 || code < 400:
			// Never let an authorizer's failure through as a 5xx with its text.
			s.cfg.Logger.Error("authorizer answered an unexpected status; refused with 403", "status", code, "reason", reason)
			code, reason = http.StatusForbidden, msgForbidden
		}
		http.Error(w, reason, code)
	})
}

// serveView writes the latest enriched scrape of every target (or of the
// nodes named by ?node=).
func (s *Server) serveView(w http.ResponseWriter, r *http.Request) {
	var filter func(*view.TargetView) bool
	if nodes := r.URL.Query()["node"]; len(nodes) > 0 {
		want := map[string]bool{}
		for _, n := range nodes {
			for _, x := range strings.Split(n, ",") {
				want[x] = true
			}
		}
		filter = func(tv *view.TargetView) bool { return want[tv.Target.Node] }
	}
	// Names outside the legacy character set are quoted for a reader that
	// asks for escaping=allow-utf-8 (Prometheus 3), else escaped, as
	// client_golang negotiates them.
	format := expfmt.NegotiateAccept(r.Header, textFormats...)
	scheme := format.ToEscapingScheme()
	w.Header().Set("Content-Type", string(format))
	var out interface {
		Write([]byte) (int, error)
	} = w
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		w.Header().Set("Content-Encoding", "gzip")
		gz := s.gz.Get().(*gzip.Writer)
		gz.Reset(w)
		defer func() {
			_ = gz.Close()
			s.gz.Put(gz)
		}()
		out = gz
	}
	if err := s.cfg.View.WriteText(out, filter, scheme); err != nil {
		s.cfg.Logger.Debug("writing /metrics", "err", err)
	}
}

// textFormats are the formats /metrics serves: the text format 1.0.0
// (UTF-8 names) and 0.0.4.
var textFormats = []expfmt.Format{"text/plain; version=1.0.0; charset=utf-8", expfmt.FmtText}

func acceptsGzip(h string) bool {
	for _, part := range strings.Split(h, ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) == "gzip" && strings.ReplaceAll(strings.TrimSpace(params), " ", "") != "q=0" {
			return true
		}
	}
	return false
}
