package fakekubelet

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Config of one fake kubelet (one node).
type Config struct {
	NodeName     string
	Listen       string // host:port
	CertFile     string // serving certificate
	KeyFile      string
	ClientCAFile string // CA of accepted client certificates (the apiserver's kubelet client)
	// The apiserver to check tokens (TokenReview) and permissions (SubjectAccessReview) with,
	// as the node: client certificate and CA.
	APIServer     string
	APIServerCA   string
	APICertFile   string
	APIKeyFile    string
	Capture       string // short name (see Captures) or a file path
	Namespaces    []string
	Offset        int
	CacheTTL      time.Duration // authentication and authorization results; real kubelets use 2m/5m
	Logger        *slog.Logger
	DisableGzip   bool
	DisableAuthz  bool   // authentication only
	KubeletMetric string // capture for /metrics; "" = kubelet-metrics
	Resource      string // capture for /metrics/resource; "" = resource-1_35
	Probes        string // capture for /metrics/probes; "" = probes-1_35
}

// Server is a running fake kubelet.
type Server struct {
	cfg      Config
	cadvisor *Capture
	metrics  *Capture
	resource *Capture
	probes   *Capture
	client   kubernetes.Interface
	log      *slog.Logger
	cache    sync.Map // string -> cached
	scrapes  atomic.Int64
	bufs     sync.Pool
}

type cached struct {
	until time.Time
	user  *authnv1.UserInfo
	ok    bool
}

func loadCapture(name string, opt RewriteOptions) (*Capture, error) {
	data, err := ReadCapture(name)
	if err != nil {
		var ferr error
		if data, ferr = os.ReadFile(name); ferr != nil {
			return nil, fmt.Errorf("capture %q: not embedded and not a file: %w", name, ferr)
		}
	}
	return Prepare(data, opt)
}

// New prepares the captures and the apiserver client.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Capture == "" {
		cfg.Capture = "1_35"
	}
	if cfg.KubeletMetric == "" {
		cfg.KubeletMetric = "kubelet-metrics"
	}
	if cfg.Resource == "" {
		cfg.Resource = "resource-1_35"
	}
	if cfg.Probes == "" {
		cfg.Probes = "probes-1_35"
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = 5 * time.Second
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeName)}
	var err error
	opt := RewriteOptions{Namespaces: cfg.Namespaces, Offset: cfg.Offset}
	if s.cadvisor, err = loadCapture(cfg.Capture, opt); err != nil {
		return nil, err
	}
	if cfg.KubeletMetric == "kubelet-metrics" {
		// The default: the 2018 kubelet's /metrics plus the volume stats a newer one writes.
		data, err := ReadCapture(cfg.KubeletMetric)
		if err == nil {
			data, err = withVolumes(data, s.cadvisor.PodNamespaces)
		}
		if err == nil {
			s.metrics, err = Prepare(data, RewriteOptions{})
		}
		if err != nil {
			return nil, fmt.Errorf("/metrics: %w", err)
		}
	} else if s.metrics, err = loadCapture(cfg.KubeletMetric, RewriteOptions{}); err != nil {
		return nil, err
	}
	// The other endpoints put each pod where /metrics/cadvisor does.
	opt.PodNamespaces = s.cadvisor.PodNamespaces
	if s.resource, err = loadCapture(cfg.Resource, opt); err != nil {
		return nil, err
	}
	if s.probes, err = loadCapture(cfg.Probes, opt); err != nil {
		return nil, err
	}
	if cfg.APIServer != "" {
		rc := &rest.Config{
			Host: cfg.APIServer,
			TLSClientConfig: rest.TLSClientConfig{
				CAFile: cfg.APIServerCA, CertFile: cfg.APICertFile, KeyFile: cfg.APIKeyFile,
			},
			Timeout: 10 * time.Second,
		}
		if s.client, err = kubernetes.NewForConfig(rc); err != nil {
			return nil, err
		}
	}
	s.log.Info("prepared", "capture", cfg.Capture, "series", s.cadvisor.Series, "pods", len(s.cadvisor.PodNamespaces), "bytes", s.cadvisor.Size())
	return s, nil
}

// Scrapes is how many /metrics/cadvisor requests were served with 200.
func (s *Server) Scrapes() int64 { return s.scrapes.Load() }

// ListenAndServe serves HTTPS until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context) error {
	cert, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if s.cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(s.cfg.ClientCAFile)
		if err != nil {
			return err
		}
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("no certificate in %s", s.cfg.ClientCAFile)
		}
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: s,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS12,
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	s.log.Info("serving", "addr", ln.Addr().String())
	err = srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// subresources are the nodes subresources a kubelet 1.35 (KubeletFineGrainedAuthz on, the
// default since 1.33) checks for a path, in order; one allowed is enough
// (pkg/kubelet/server/auth.go GetRequestAttributes).
func subresources(path string) []string {
	var out []string
	switch {
	case isSubpath(path, "/pods"), isSubpath(path, "/runningpods"):
		out = append(out, "pods")
	case isSubpath(path, "/healthz"):
		out = append(out, "healthz")
	case isSubpath(path, "/configz"):
		out = append(out, "configz")
	}
	switch {
	case isSubpath(path, "/stats"):
		return append(out, "stats")
	case isSubpath(path, "/metrics"):
		return append(out, "metrics")
	case isSubpath(path, "/logs"):
		return append(out, "log")
	case isSubpath(path, "/checkpoint"):
		return append(out, "checkpoint")
	case isSubpath(path, "/statusz"):
		return append(out, "statusz")
	case isSubpath(path, "/flagz"):
		return append(out, "configz")
	}
	return append(out, "proxy")
}

func isSubpath(sub, path string) bool {
	return sub == path || (strings.HasPrefix(sub, path) && len(sub) > len(path) && sub[len(path)] == '/')
}

func verb(method string) string {
	switch method {
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	return "get"
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	code, user, n := s.serve(w, r)
	s.log.Info("request", "method", r.Method, "path", r.URL.Path, "user", user, "code", code, "bytes", n, "took", time.Since(start).Round(time.Microsecond))
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) (int, string, int) {
	user, code, msg := s.authenticate(r)
	if code != 0 {
		http.Error(w, msg, code)
		return code, "", 0
	}
	if !s.cfg.DisableAuthz {
		if code, msg := s.authorize(r, user); code != 0 {
			http.Error(w, msg, code)
			return code, user.Username, 0
		}
	}
	var c *Capture
	switch r.URL.Path {
	case "/metrics/cadvisor":
		c = s.cadvisor
	case "/metrics":
		c = s.metrics
	case "/metrics/resource":
		c = s.resource
	case "/metrics/probes":
		c = s.probes
	case "/healthz":
		_, _ = w.Write([]byte("ok"))
		return 200, user.Username, 2
	default:
		http.NotFound(w, r)
		return 404, user.Username, 0
	}
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, c.Size())
		bp = &b
	}
	buf := c.AppendTo((*bp)[:0], time.Now())
	defer func() { *bp = buf; s.bufs.Put(bp) }()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if !s.cfg.DisableGzip && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		_, _ = zw.Write(buf)
		_ = zw.Close()
	} else {
		w.Header().Set("Content-Length", fmt.Sprint(len(buf)))
		_, _ = w.Write(buf)
	}
	if c == s.cadvisor {
		s.scrapes.Add(1)
	}
	return 200, user.Username, len(buf)
}

func (s *Server) authenticate(r *http.Request) (*authnv1.UserInfo, int, string) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		c := r.TLS.VerifiedChains[0][0]
		return &authnv1.UserInfo{Username: c.Subject.CommonName, Groups: c.Subject.Organization}, 0, ""
	}
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" || s.client == nil {
		return nil, http.StatusUnauthorized, "Unauthorized"
	}
	key := "authn/" + token
	if v, ok := s.cache.Load(key); ok && time.Now().Before(v.(cached).until) {
		if v.(cached).ok {
			return v.(cached).user, 0, ""
		}
		return nil, http.StatusUnauthorized, "Unauthorized"
	}
	tr, err := s.client.AuthenticationV1().TokenReviews().Create(r.Context(), &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token},
	}, metav1.CreateOptions{})
	if err != nil {
		s.log.Warn("tokenreview failed", "err", err)
		return nil, http.StatusInternalServerError, "token review failed"
	}
	res := cached{until: time.Now().Add(s.cfg.CacheTTL), ok: tr.Status.Authenticated}
	if res.ok {
		u := tr.Status.User
		res.user = &u
	}
	s.cache.Store(key, res)
	if !res.ok {
		return nil, http.StatusUnauthorized, "Unauthorized"
	}
	return res.user, 0, ""
}

func (s *Server) authorize(r *http.Request, u *authnv1.UserInfo) (int, string) {
	if s.client == nil {
		return http.StatusForbidden, "Forbidden (no authorizer)"
	}
	subs := subresources(r.URL.Path)
	for _, sub := range subs {
		ok, err := s.allowed(r, u, sub)
		if err != nil {
			s.log.Warn("subjectaccessreview failed", "err", err)
			return http.StatusInternalServerError, "authorization check failed"
		}
		if ok {
			return 0, ""
		}
	}
	return http.StatusForbidden, fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=nodes, subresource(s)=%v)",
		u.Username, verb(r.Method), subs)
}

func (s *Server) allowed(r *http.Request, u *authnv1.UserInfo, sub string) (bool, error) {
	attrs := authzv1.ResourceAttributes{
		Verb: verb(r.Method), Resource: "nodes", Subresource: sub, Name: s.cfg.NodeName,
	}
	key := fmt.Sprintf("authz/%s/%v/%s/%s", u.Username, u.Groups, attrs.Verb, attrs.Subresource)
	if v, ok := s.cache.Load(key); ok && time.Now().Before(v.(cached).until) {
		return v.(cached).ok, nil
	}
	extra := map[string]authzv1.ExtraValue{}
	for k, e := range u.Extra {
		extra[k] = authzv1.ExtraValue(e)
	}
	sar, err := s.client.AuthorizationV1().SubjectAccessReviews().Create(r.Context(), &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{
			User: u.Username, Groups: u.Groups, UID: u.UID, Extra: extra, ResourceAttributes: &attrs,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	s.cache.Store(key, cached{until: time.Now().Add(s.cfg.CacheTTL), ok: sar.Status.Allowed})
	return sar.Status.Allowed, nil
}
