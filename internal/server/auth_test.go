package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/kubeclient/clientset"
)

// fakeAPI answers TokenReviews, SubjectAccessReviews and
// SelfSubjectAccessReviews like a kube-apiserver would: token "good" belongs
// to a user granted the paths in granted, "denied" to one without; any
// other token is not authenticated. Failures can be switched on, and every
// call is counted.
type fakeAPI struct {
	client *fake.Clientset

	mu        sync.Mutex
	granted   map[string]bool // path -> "good" may get it
	trErr     error           // returned by TokenReview create
	sarErr    error
	selfAllow map[string]bool // resource -> the relay may create it

	tr, sar, ssar atomic.Int32
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{client: fake.NewSimpleClientset(),
		granted:   map[string]bool{PathMetrics: true, PathSelfMetrics: true},
		selfAllow: map[string]bool{"tokenreviews": true, "subjectaccessreviews": true}}
	f.client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.tr.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.trErr != nil {
			return true, nil, f.trErr
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
		switch tr.Spec.Token {
		case "good", "denied":
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{
				Username: "system:serviceaccount:monitoring:" + tr.Spec.Token, UID: "uid-" + tr.Spec.Token, Groups: []string{"system:serviceaccounts"}}}
		default:
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: false, Error: "invalid bearer token"}
		}
		return true, tr, nil
	})
	f.client.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.sar.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.sarErr != nil {
			return true, nil, f.sarErr
		}
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
		na := sar.Spec.NonResourceAttributes
		if na == nil || na.Verb != "get" || sar.Spec.UID == "" {
			t.Errorf("SAR without a get on a non-resource path or without the user's UID: %+v", sar.Spec)
			return true, sar, nil
		}
		sar.Status.Allowed = sar.Spec.User == "system:serviceaccount:monitoring:good" && f.granted[na.Path]
		return true, sar, nil
	})
	f.client.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.ssar.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		ssar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
		ssar.Status.Allowed = f.selfAllow[ssar.Spec.ResourceAttributes.Resource]
		return true, ssar, nil
	})
	return f
}

func (f *fakeAPI) set(fn func(f *fakeAPI)) { f.mu.Lock(); fn(f); f.mu.Unlock() }

// clock is a settable time source for the caches' TTLs.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newTestAuthorizer(t *testing.T, f *fakeAPI, cfg AuthConfig) (*KubeAuthorizer, *prometheus.Registry, *clock, *syncBuffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	cfg.Client, cfg.Registerer = clientset.New(f.client), reg
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := NewKubeAuthorizer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	a.now = c.now
	return a, reg, c, logs
}

func authReq(path, token string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://relay"+path, nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

// internalWords must never reach a caller: they would show the relay's
// identity, the apiserver's answer or that a review failed.
var internalWords = []string{"apiserver", "kubelet-meta-proxy:", "tokenreview", "subjectaccessreview", "cannot create", "connection refused", "review"}

func TestKubeAuthorizerOverHTTP(t *testing.T) {
	f := newFakeAPI(t)
	a, reg, _, logs := newTestAuthorizer(t, f, AuthConfig{})
	base := start(t, Config{View: testView(t), Gatherer: prometheus.NewRegistry(), Ready: func() error { return nil }, Authorizer: a})
	type tc struct {
		name, path, auth string
		code             int
		body             string // exact body (after trimming), or "" with contains
		contains         string
	}
	run := func(cases []tc) {
		t.Helper()
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var h []string
				if c.auth != "" {
					h = []string{"Authorization", c.auth}
				}
				resp, body := get(t, base+c.path, h...)
				if resp.StatusCode != c.code {
					t.Fatalf("%d %q, want %d", resp.StatusCode, body, c.code)
				}
				if c.body != "" && strings.TrimSpace(body) != c.body {
					t.Fatalf("body %q, want %q", body, c.body)
				}
				if !strings.Contains(body, c.contains) {
					t.Fatalf("body %q does not contain %q", body, c.contains)
				}
				if c.code == 401 && resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				if c.code != 200 {
					for _, w := range internalWords {
						if strings.Contains(strings.ToLower(body), w) {
							t.Errorf("answer %q carries internal detail %q", body, w)
						}
					}
				}
			})
		}
	}
	run([]tc{
		{"no token", PathMetrics, "", 401, "Unauthorized", ""},
		{"not bearer", PathMetrics, "Basic dXNlcjpwYXNz", 401, "Unauthorized", ""},
		{"empty bearer", PathMetrics, "Bearer  ", 401, "Unauthorized", ""},
		{"garbage token", PathMetrics, "Bearer nope", 401, "Unauthorized", ""},
		{"denied", PathMetrics, "Bearer denied", 403, "", `nonResourceURLs: ["/metrics"]`},
		{"denied self", PathSelfMetrics, "Bearer denied", 403, "", "may not get /metrics/self"},
		{"allowed", PathMetrics, "Bearer good", 200, "", "container_cpu_usage_seconds_total"},
		{"allowed self", PathSelfMetrics, "Bearer good", 200, "", ""},
	})
	if resp, _ := get(t, base+PathHealthz); resp.StatusCode != 200 {
		t.Fatal("health checks must not need a token")
	}

	// The apiserver refuses the reviews (the relay lacks the permission):
	// 401 for a new token, 403 for a known user's new path, with nothing of
	// the refusal in the answer; the log and the error counter have it.
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "authentication.k8s.io", Resource: "tokenreviews"}, "",
		errors.New(`User "system:serviceaccount:kubelet-meta-proxy:kubelet-meta-proxy" cannot create resource "tokenreviews"`))
	f.set(func(f *fakeAPI) {
		f.trErr = forbidden
		f.sarErr = errors.New("dial tcp 10.96.0.1:443: connect: connection refused")
	})
	a.authz = newTTLCache[bool](16) // forget the allowed paths of "good"
	run([]tc{
		{"token review refused", PathMetrics, "Bearer new-token", 401, "Unauthorized", ""},
		{"access review fails", PathMetrics, "Bearer good", 403, "Forbidden", ""},
	})
	if got := testutil.ToFloat64(a.errs.WithLabelValues(reviewToken)); got != 1 {
		t.Errorf("tokenreview errors %v, want 1", got)
	}
	if got := testutil.ToFloat64(a.errs.WithLabelValues(reviewAccess)); got != 1 {
		t.Errorf("subjectaccessreview errors %v, want 1", got)
	}
	if got := testutil.ToFloat64(a.decisions.WithLabelValues("error")); got != 2 {
		t.Errorf("error decisions %v, want 2", got)
	}
	if l := logs.String(); !strings.Contains(l, `cannot create resource \"tokenreviews\"`) || !strings.Contains(l, "connection refused") {
		t.Errorf("the failures' detail is not in the log:\n%s", l)
	}
	// A refused review makes the relay unready at once.
	resp, body := get(t, base+PathReadyz)
	if resp.StatusCode != 503 || !strings.Contains(body, "create tokenreviews.authentication.k8s.io") {
		t.Errorf("readyz after a refused TokenReview: %d %q", resp.StatusCode, body)
	}
	if n, err := testutil.GatherAndCount(reg, "kubelet_meta_proxy_server_auth_decisions_total"); err != nil || n != 5 {
		t.Errorf("decision series %d (%v), want 5", n, err)
	}
}

// Results are cached per token (authentication) and per user and path
// (authorization); negative entries too, with short TTLs, so that a grant
// shows within DenyTTL and a garbage token is reviewed once per AuthnFailTTL.
func TestKubeAuthorizerCaches(t *testing.T) {
	f := newFakeAPI(t)
	a, _, clk, _ := newTestAuthorizer(t, f, AuthConfig{AuthnTTL: 2 * time.Minute, AuthnFailTTL: 10 * time.Second, AllowTTL: time.Minute, DenyTTL: 5 * time.Second})
	ctx := context.Background()
	calls := func() (int32, int32) { return f.tr.Load(), f.sar.Load() }
	want := func(step string, code int, token, path string, tr, sar int32) {
		t.Helper()
		if got, _ := a.Authorize(ctx, authReq(path, token)); got != code {
			t.Fatalf("%s: %d, want %d", step, got, code)
		}
		if gtr, gsar := calls(); gtr != tr || gsar != sar {
			t.Fatalf("%s: %d token reviews and %d access reviews so far, want %d and %d", step, gtr, gsar, tr, sar)
		}
	}
	want("first good", 200, "good", PathMetrics, 1, 1)
	want("good again", 200, "good", PathMetrics, 1, 1)
	want("good, other path", 200, "good", PathSelfMetrics, 1, 2)
	want("garbage", 401, "nope", PathMetrics, 2, 2)
	want("garbage again (negative entry)", 401, "nope", PathMetrics, 2, 2)
	want("denied", 403, "denied", PathMetrics, 3, 3)
	want("denied again (negative entry)", 403, "denied", PathMetrics, 3, 3)

	// The grant: seen once DenyTTL has passed, not a minute later.
	f.client.PrependReactor("create", "subjectaccessreviews", func(act k8stesting.Action) (bool, runtime.Object, error) {
		sar := act.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
		if sar.Spec.User == "system:serviceaccount:monitoring:denied" {
			f.sar.Add(1)
			sar.Status.Allowed = true
			return true, sar, nil
		}
		return false, nil, nil
	})
	clk.add(4 * time.Second)
	want("denied within DenyTTL", 403, "denied", PathMetrics, 3, 3)
	clk.add(2 * time.Second)
	want("granted after DenyTTL", 200, "denied", PathMetrics, 3, 4)
	want("garbage within AuthnFailTTL", 401, "nope", PathMetrics, 3, 4)
	clk.add(50 * time.Second) // 56s
	want("garbage after AuthnFailTTL", 401, "nope", PathMetrics, 4, 4)
	want("good within AllowTTL", 200, "good", PathMetrics, 4, 4)
	clk.add(10 * time.Second) // 66s: the allow entry expired, the token's not
	want("good after AllowTTL", 200, "good", PathMetrics, 4, 5)
	clk.add(55 * time.Second) // 121s: the token's entry expired, the new allow entry not
	want("good after AuthnTTL", 200, "good", PathMetrics, 5, 5)
}

// Garbage tokens cannot make unbounded TokenReviews: beyond the burst, at
// ReviewsPerSecond; the rest are 429 without a review. Callers already
// cached are not affected.
func TestKubeAuthorizerRateLimitsReviews(t *testing.T) {
	f := newFakeAPI(t)
	a, _, _, _ := newTestAuthorizer(t, f, AuthConfig{ReviewsPerSecond: 1, ReviewBurst: 10})
	ctx := context.Background()
	if code, _ := a.Authorize(ctx, authReq(PathMetrics, "good")); code != 200 {
		t.Fatal(code)
	}
	start := time.Now()
	codes := map[int]int{}
	for i := 0; i < 300; i++ {
		code, reason := a.Authorize(ctx, authReq(PathMetrics, fmt.Sprintf("garbage-%d", i)))
		codes[code]++
		if code == 429 && reason != msgTooMany {
			t.Fatalf("429 with %q", reason)
		}
	}
	elapsed := time.Since(start)
	// 2 reviews of "good", 8 left of the burst, plus one a second.
	maxReviews := int32(10 + 1 + int(elapsed.Seconds()))
	if n := f.tr.Load() + f.sar.Load(); n > maxReviews {
		t.Fatalf("300 garbage tokens made %d reviews, want at most %d", n, maxReviews)
	}
	if codes[401]+codes[429] != 300 || codes[429] < 280 {
		t.Fatalf("answers %v", codes)
	}
	if got := testutil.ToFloat64(a.limited); got != float64(codes[429]) {
		t.Errorf("rate_limited counter %v, want %d", got, codes[429])
	}
	tr := f.tr.Load()
	if code, _ := a.Authorize(ctx, authReq(PathMetrics, "good")); code != 200 || f.tr.Load() != tr {
		t.Fatalf("a cached caller during the flood: %d, %d new reviews", code, f.tr.Load()-tr)
	}
}

func TestTTLCacheIsBounded(t *testing.T) {
	c := newTTLCache[int](100)
	exp := time.Unix(2e9, 0)
	now := time.Unix(1e9, 0)
	key := func(i int) [32]byte { var k [32]byte; k[0], k[1] = byte(i), byte(i>>8); return k }
	for i := 0; i < 1000; i++ {
		c.put(key(i), i, exp)
		if n := c.len(); n > 100 {
			t.Fatalf("%d entries after %d puts, bound 100", n, i+1)
		}
	}
	// The newest are there, the oldest gone.
	if v, ok := c.get(key(999), now); !ok || v != 999 {
		t.Fatal("newest entry missing")
	}
	if _, ok := c.get(key(0), now); ok {
		t.Fatal("oldest entry still there")
	}
	// An entry read from the old generation survives the next rotation.
	c2 := newTTLCache[int](4)
	c2.put(key(1), 1, exp)
	c2.put(key(2), 2, exp)
	c2.put(key(3), 3, exp) // rotation: 1, 2 old
	if _, ok := c2.get(key(1), now); !ok {
		t.Fatal("entry lost at the first rotation")
	}
	c2.put(key(4), 4, exp) // rotation: 3, 1 old; 2 dropped
	if _, ok := c2.get(key(1), now); !ok {
		t.Fatal("an entry in use was dropped")
	}
	if _, ok := c2.get(key(2), now); ok {
		t.Fatal("an unused entry survived two rotations")
	}
	if _, ok := c2.get(key(4), exp); ok {
		t.Fatal("an expired entry was returned")
	}
}

// /readyz fails until the relay's permissions are checked, while it lacks
// one (naming it), and recovers when it is granted.
func TestKubeAuthorizerReadiness(t *testing.T) {
	f := newFakeAPI(t)
	f.set(func(f *fakeAPI) { f.selfAllow = map[string]bool{"tokenreviews": true} })
	a, reg, _, _ := newTestAuthorizer(t, f, AuthConfig{CheckInterval: 50 * time.Millisecond})
	base := start(t, Config{View: testView(t), Gatherer: prometheus.NewRegistry(), Ready: func() error { return nil }, Authorizer: a})
	resp, body := get(t, base+PathReadyz)
	if resp.StatusCode != 503 || !strings.Contains(body, "not checked yet") {
		t.Fatalf("before the first check: %d %q", resp.StatusCode, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	waitReady := func(code int, contains string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, body := get(t, base+PathReadyz)
			if resp.StatusCode == code && strings.Contains(body, contains) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("readyz %d %q, want %d with %q", resp.StatusCode, body, code, contains)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitReady(503, "may not create subjectaccessreviews.authorization.k8s.io")
	if got := testutil.ToFloat64(a.readyG); got != 0 {
		t.Errorf("ready gauge %v", got)
	}
	f.set(func(f *fakeAPI) { f.selfAllow["subjectaccessreviews"] = true })
	waitReady(200, "ok")
	if n, err := testutil.GatherAndCount(reg, "kubelet_meta_proxy_server_auth_ready"); err != nil || n != 1 || testutil.ToFloat64(a.readyG) != 1 {
		t.Errorf("ready gauge %v (%d, %v)", testutil.ToFloat64(a.readyG), n, err)
	}
	// The server's own readiness still comes first.
	base2 := start(t, Config{View: testView(t), Gatherer: prometheus.NewRegistry(), Ready: func() error { return errors.New("waiting for caches") }, Authorizer: a})
	if resp, body := get(t, base2+PathReadyz); resp.StatusCode != 503 || !strings.Contains(body, "waiting for caches") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

// An authorizer that answers a 5xx (or anything unexpected) is turned into a
// generic 403: its text never reaches the caller.
type brokenAuthorizer struct{}

func (brokenAuthorizer) Authorize(context.Context, *http.Request) (int, string) {
	return 500, "token review failed: secret detail"
}

func TestServerNeverPassesAuthorizerErrors(t *testing.T) {
	base := start(t, Config{View: testView(t), Gatherer: prometheus.NewRegistry(), Ready: func() error { return nil }, Authorizer: brokenAuthorizer{}})
	resp, body := get(t, base+PathMetrics)
	if resp.StatusCode != 403 || strings.Contains(body, "secret") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}
