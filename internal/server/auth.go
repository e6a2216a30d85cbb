package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/kubeclient"
)

// Generic answers: what an unauthenticated or refused caller sees. The
// detail of an internal error goes to the log and to
// kubelet_meta_proxy_server_auth_errors_total, never into a response.
const (
	msgUnauthorized = "Unauthorized"
	msgForbidden    = "Forbidden"
	msgTooMany      = "Too Many Requests: authentication is rate limited, retry later"
)

// AuthConfig configures KubeAuthorizer. Zero durations and sizes take the
// defaults (DefaultAuthConfig).
type AuthConfig struct {
	Client     kubeclient.Interface
	Logger     *slog.Logger
	Registerer prometheus.Registerer

	// How long a TokenReview result is kept: authenticated tokens, and
	// tokens the apiserver rejected (a negative entry, short).
	AuthnTTL, AuthnFailTTL time.Duration
	// How long a SubjectAccessReview result is kept: allowed, and denied
	// (short, so that a grant is seen within seconds).
	AllowTTL, DenyTTL time.Duration
	// CacheSize bounds each of the two caches (entries).
	CacheSize int
	// ReviewsPerSecond and ReviewBurst bound the TokenReviews and
	// SubjectAccessReviews sent to the apiserver together: a flood of garbage
	// tokens costs at most this many reviews.
	ReviewsPerSecond float64
	ReviewBurst      int
	// CheckInterval is how often the relay checks that its own identity may
	// create TokenReviews and SubjectAccessReviews (readiness).
	CheckInterval time.Duration
}

// DefaultAuthConfig holds the defaults: the TTLs of kube-rbac-proxy and
// controller-runtime's filters (2m authenticated, 5m allowed), shorter
// negative entries, and a review rate far above what a few scrapers need
// (each caller costs two reviews per AuthnTTL).
var DefaultAuthConfig = AuthConfig{
	AuthnTTL: 2 * time.Minute, AuthnFailTTL: 10 * time.Second,
	AllowTTL: time.Minute, DenyTTL: 5 * time.Second,
	CacheSize:        4096,
	ReviewsPerSecond: 20, ReviewBurst: 40,
	CheckInterval: 30 * time.Second,
}

func (c *AuthConfig) applyDefaults() {
	d := DefaultAuthConfig
	set := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&c.AuthnTTL, d.AuthnTTL)
	set(&c.AuthnFailTTL, d.AuthnFailTTL)
	set(&c.AllowTTL, d.AllowTTL)
	set(&c.DenyTTL, d.DenyTTL)
	set(&c.CheckInterval, d.CheckInterval)
	if c.CacheSize <= 0 {
		c.CacheSize = d.CacheSize
	}
	if c.ReviewsPerSecond <= 0 {
		c.ReviewsPerSecond = d.ReviewsPerSecond
	}
	if c.ReviewBurst <= 0 {
		c.ReviewBurst = d.ReviewBurst
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// KubeAuthorizer lets in callers whose bearer token passes a TokenReview and
// whose SubjectAccessReview allows get on the request's non-resource path,
// the way kube-rbac-proxy and controller-runtime's secure metrics do.
// Results are cached (bounded, negative entries with short TTLs) and the
// reviews are rate limited. Ready reports whether authorization can work:
// Run checks that the relay's identity may create both kinds of review.
type KubeAuthorizer struct {
	cfg     AuthConfig
	limiter *rate.Limiter
	now     func() time.Time

	authn *ttlCache[*authenticationv1.UserInfo] // nil user: not authenticated
	authz *ttlCache[bool]

	recheck chan struct{}
	mu      sync.Mutex
	ready   error

	decisions *prometheus.CounterVec
	reviews   *prometheus.CounterVec
	errs      *prometheus.CounterVec
	limited   prometheus.Counter
	readyG    prometheus.Gauge
}

// NewKubeAuthorizer returns an authorizer; it is not ready until Run has
// checked the relay's permissions once.
func NewKubeAuthorizer(cfg AuthConfig) (*KubeAuthorizer, error) {
	if cfg.Client == nil {
		return nil, errors.New("secure serving: no Kubernetes client")
	}
	cfg.applyDefaults()
	a := &KubeAuthorizer{
		cfg:     cfg,
		limiter: rate.NewLimiter(rate.Limit(cfg.ReviewsPerSecond), cfg.ReviewBurst),
		now:     time.Now,
		authn:   newTTLCache[*authenticationv1.UserInfo](cfg.CacheSize),
		authz:   newTTLCache[bool](cfg.CacheSize),
		recheck: make(chan struct{}, 1),
		ready:   errors.New("secure serving: the relay's permission to create TokenReviews and SubjectAccessReviews is not checked yet"),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubelet_meta_proxy_server_auth_decisions_total",
			Help: "Requests to the secure endpoint by decision: allowed, unauthenticated, forbidden, rate_limited, error (answered 401/403)."}, []string{"decision"}),
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubelet_meta_proxy_server_auth_reviews_total",
			Help: "TokenReviews and SubjectAccessReviews sent to the kube-apiserver (cache misses)."}, []string{"review"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubelet_meta_proxy_server_auth_errors_total",
			Help: "Reviews that failed (the apiserver refused or could not be reached); the caller got a generic 401/403."}, []string{"review"}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{Name: "kubelet_meta_proxy_server_auth_rate_limited_total",
			Help: "Requests refused (429) because the review rate limit was reached."}),
		readyG: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kubelet_meta_proxy_server_auth_ready",
			Help: "1 when the relay's identity may create TokenReviews and SubjectAccessReviews (secure serving can authorize)."}),
	}
	for _, d := range []string{"allowed", "unauthenticated", "forbidden", "rate_limited", "error"} {
		a.decisions.WithLabelValues(d)
	}
	for _, r := range []string{reviewToken, reviewAccess} {
		a.reviews.WithLabelValues(r)
		a.errs.WithLabelValues(r)
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{a.decisions, a.reviews, a.errs, a.limited, a.readyG} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return a, nil
}

const (
	reviewToken  = "tokenreview"
	reviewAccess = "subjectaccessreview"
)

// Authorize implements Authorizer. The reason it returns is safe to show to
// anyone: a generic text, or for an authenticated caller without the
// permission, what to grant.
func (a *KubeAuthorizer) Authorize(ctx context.Context, r *http.Request) (int, string) {
	code, reason, decision := a.authorize(ctx, r)
	a.decisions.WithLabelValues(decision).Inc()
	if decision == "rate_limited" {
		a.limited.Inc()
	}
	return code, reason
}

func (a *KubeAuthorizer) authorize(ctx context.Context, r *http.Request) (code int, reason, decision string) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	if !ok || token == "" {
		return http.StatusUnauthorized, msgUnauthorized, "unauthenticated"
	}
	user, code := a.authenticate(ctx, token)
	switch code {
	case http.StatusOK:
	case http.StatusTooManyRequests:
		return code, msgTooMany, "rate_limited"
	case http.StatusInternalServerError:
		// The caller is not authenticated: it learns nothing of the failure.
		return http.StatusUnauthorized, msgUnauthorized, "error"
	default:
		return http.StatusUnauthorized, msgUnauthorized, "unauthenticated"
	}
	path := r.URL.Path
	allowed, code := a.access(ctx, user, path)
	switch {
	case code == http.StatusTooManyRequests:
		return code, msgTooMany, "rate_limited"
	case code != http.StatusOK:
		return http.StatusForbidden, msgForbidden, "error"
	case !allowed:
		return http.StatusForbidden, fmt.Sprintf("Forbidden: user %q may not get %s (needs a ClusterRole with nonResourceURLs: [%q], verbs: [\"get\"])", user.Username, path, path), "forbidden"
	}
	return http.StatusOK, "", "allowed"
}

// authenticate returns the token's user and 200, or 401 (not
// authenticated), 429 (rate limited) or 500 (the review failed).
func (a *KubeAuthorizer) authenticate(ctx context.Context, token string) (*authenticationv1.UserInfo, int) {
	key := sha256.Sum256([]byte(token))
	now := a.now()
	if u, ok := a.authn.get(key, now); ok {
		if u == nil {
			return nil, http.StatusUnauthorized
		}
		return u, http.StatusOK
	}
	if !a.limiter.Allow() {
		return nil, http.StatusTooManyRequests
	}
	a.reviews.WithLabelValues(reviewToken).Inc()
	tr, err := a.cfg.Client.TokenReviews().Create(ctx,
		&authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		a.reviewFailed(reviewToken, "create tokenreviews.authentication.k8s.io", err)
		return nil, http.StatusInternalServerError
	}
	if !tr.Status.Authenticated {
		a.cfg.Logger.Debug("token not authenticated", "reason", tr.Status.Error)
		a.authn.put(key, nil, now.Add(a.cfg.AuthnFailTTL))
		return nil, http.StatusUnauthorized
	}
	u := tr.Status.User
	a.authn.put(key, &u, now.Add(a.cfg.AuthnTTL))
	return &u, http.StatusOK
}

// access returns whether user may get path; code is 200 when the answer is
// known, 429 when rate limited, 500 when the review failed.
func (a *KubeAuthorizer) access(ctx context.Context, u *authenticationv1.UserInfo, path string) (bool, int) {
	key := accessKey(u, path)
	now := a.now()
	if ok, found := a.authz.get(key, now); found {
		return ok, http.StatusOK
	}
	if !a.limiter.Allow() {
		return false, http.StatusTooManyRequests
	}
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	a.reviews.WithLabelValues(reviewAccess).Inc()
	sar, err := a.cfg.Client.SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
			NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: path, Verb: "get"},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		a.reviewFailed(reviewAccess, "create subjectaccessreviews.authorization.k8s.io", err)
		return false, http.StatusInternalServerError
	}
	ttl := a.cfg.AllowTTL
	if !sar.Status.Allowed {
		ttl = a.cfg.DenyTTL
	}
	a.authz.put(key, sar.Status.Allowed, now.Add(ttl))
	return sar.Status.Allowed, http.StatusOK
}

// accessKey identifies a user (every attribute a SubjectAccessReview sees)
// and a path.
func accessKey(u *authenticationv1.UserInfo, path string) [32]byte {
	h := sha256.New()
	w := func(s string) { h.Write([]byte(s)); h.Write([]byte{0}) }
	w(u.Username)
	w(u.UID)
	for _, g := range u.Groups {
		w(g)
	}
	w("\x01")
	keys := make([]string, 0, len(u.Extra))
	for k := range u.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w(k)
		for _, v := range u.Extra[k] {
			w(v)
		}
		w("\x01")
	}
	w(path)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// reviewFailed logs and counts a failed review. A refusal of the review
// itself (the relay lacks the permission) makes the relay unready at once;
// any failure asks Run for a new check.
func (a *KubeAuthorizer) reviewFailed(review, permission string, err error) {
	a.errs.WithLabelValues(review).Inc()
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		a.setReady(fmt.Errorf("secure serving cannot authorize: the relay's identity may not %s (RBAC: the secure-metrics component or chart value): %w", permission, err))
	}
	a.cfg.Logger.Error("secure serving: review failed; the caller got a generic answer", "review", review, "err", err)
	select {
	case a.recheck <- struct{}{}:
	default:
	}
}

// Ready returns nil when the relay may create TokenReviews and
// SubjectAccessReviews, else why not.
func (a *KubeAuthorizer) Ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ready
}

func (a *KubeAuthorizer) setReady(err error) {
	a.mu.Lock()
	was := a.ready
	a.ready = err
	a.mu.Unlock()
	switch {
	case err == nil && was != nil:
		a.readyG.Set(1)
		a.cfg.Logger.Info("secure serving: the relay may create TokenReviews and SubjectAccessReviews")
	case err != nil && (was == nil || was.Error() != err.Error()):
		a.readyG.Set(0)
		a.cfg.Logger.Error("secure serving: not ready", "err", err)
	}
}

// Run checks the relay's own permissions with SelfSubjectAccessReviews (which
// every authenticated identity may create) at once, every CheckInterval (at
// most every 5s while not ready, so that a grant is seen soon) and after a
// failed review, until ctx is done.
func (a *KubeAuthorizer) Run(ctx context.Context) {
	for {
		err := a.Check(ctx)
		if ctx.Err() != nil {
			return
		}
		a.setReady(err)
		last := a.now()
		wait := a.cfg.CheckInterval
		if err != nil {
			wait = min(wait, 5*time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-a.recheck:
			t.Stop()
			// At most one extra check a second, however many reviews fail.
			if d := time.Second - a.now().Sub(last); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
		}
	}
}

// Check asks the apiserver whether the relay may create TokenReviews and
// SubjectAccessReviews, and says which permission is missing if not.
func (a *KubeAuthorizer) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, ra := range []authorizationv1.ResourceAttributes{
		{Group: "authentication.k8s.io", Resource: "tokenreviews", Verb: "create"},
		{Group: "authorization.k8s.io", Resource: "subjectaccessreviews", Verb: "create"},
	} {
		what := ra.Verb + " " + ra.Resource + "." + ra.Group
		ssar, err := a.cfg.Client.SelfSubjectAccessReviews().Create(ctx,
			&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &ra}}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("secure serving cannot authorize: checking whether the relay may %s: %w", what, err)
		}
		if !ssar.Status.Allowed {
			return fmt.Errorf("secure serving cannot authorize: the relay's identity may not %s (RBAC: the secure-metrics component or chart value grants it)", what)
		}
	}
	return nil
}

// ttlCache is a bounded map with expiring entries. Two generations: when the
// current one is half full it becomes the old one and the older is dropped,
// so at most size entries are held, with no per-entry bookkeeping, and an
// entry read from the old generation moves back to the current one.
type ttlCache[V any] struct {
	mu       sync.Mutex
	half     int
	cur, old map[[32]byte]ttlEntry[V]
}

type ttlEntry[V any] struct {
	v       V
	expires time.Time
}

func newTTLCache[V any](size int) *ttlCache[V] {
	half := max(size/2, 1)
	return &ttlCache[V]{half: half, cur: make(map[[32]byte]ttlEntry[V], half)}
}

func (c *ttlCache[V]) get(k [32]byte, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cur[k]
	if !ok {
		if e, ok = c.old[k]; ok {
			delete(c.old, k)
			c.putLocked(k, e)
		}
	}
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *ttlCache[V]) put(k [32]byte, v V, expires time.Time) {
	c.mu.Lock()
	c.putLocked(k, ttlEntry[V]{v, expires})
	c.mu.Unlock()
}

func (c *ttlCache[V]) putLocked(k [32]byte, e ttlEntry[V]) {
	if _, ok := c.cur[k]; !ok && len(c.cur) >= c.half {
		c.old, c.cur = c.cur, make(map[[32]byte]ttlEntry[V], c.half)
	}
	c.cur[k] = e
}

func (c *ttlCache[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.old)
}
