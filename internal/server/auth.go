package server

import (
	"context"
	"crypto/sha256"
	"net/http"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// KubeAuthorizer lets in callers whose bearer token passes a TokenReview and
// whose SubjectAccessReview allows get on the request's non-resource path,
// the way kube-rbac-proxy and controller-runtime's secure metrics do.
// Decisions are cached briefly so a scraper does not cost two API calls per
// scrape.
type KubeAuthorizer struct {
	Client kubernetes.Interface
	TTL    time.Duration

	mu    sync.Mutex
	cache map[[32]byte]decision
}

type decision struct {
	code    int
	reason  string
	expires time.Time
}

// Authorize implements Authorizer.
func (a *KubeAuthorizer) Authorize(ctx context.Context, r *http.Request) (int, string) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return http.StatusUnauthorized, "a bearer token is required (--metrics-secure)"
	}
	path := r.URL.Path
	key := sha256.Sum256([]byte(path + "\x00" + token))
	now := time.Now()
	a.mu.Lock()
	if d, ok := a.cache[key]; ok && now.Before(d.expires) {
		a.mu.Unlock()
		return d.code, d.reason
	}
	a.mu.Unlock()

	code, reason := a.review(ctx, token, path)
	ttl := a.TTL
	if ttl <= 0 {
		ttl = time.Minute
	}
	if code == http.StatusOK || code == http.StatusUnauthorized || code == http.StatusForbidden {
		a.mu.Lock()
		if a.cache == nil || len(a.cache) > 10000 {
			a.cache = map[[32]byte]decision{}
		}
		a.cache[key] = decision{code, reason, now.Add(ttl)}
		a.mu.Unlock()
	}
	return code, reason
}

func (a *KubeAuthorizer) review(ctx context.Context, token, path string) (int, string) {
	tr, err := a.Client.AuthenticationV1().TokenReviews().Create(ctx,
		&authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return http.StatusInternalServerError, "token review failed: " + err.Error()
	}
	if !tr.Status.Authenticated {
		return http.StatusUnauthorized, "token not authenticated: " + tr.Status.Error
	}
	u := tr.Status.User
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar, err := a.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
			NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: path, Verb: "get"},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return http.StatusInternalServerError, "subject access review failed: " + err.Error()
	}
	if !sar.Status.Allowed {
		return http.StatusForbidden, "user " + u.Username + " may not get " + path + " (needs a ClusterRole with nonResourceURLs: [\"" + path + "\"], verbs: [\"get\"])"
	}
	return http.StatusOK, ""
}
