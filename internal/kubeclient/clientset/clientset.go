// Package clientset adapts client-go's typed clientset to
// kubeclient.Interface, for the tests (client-go's fakes and their
// reactors) and the e2e bed. The relay itself must not import it: it links
// the whole clientset (internal/archtest).
package clientset

import (
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/kubeclient"
)

// New returns cs as a kubeclient.Interface. Like cs, it tells the
// informers whether watch-list semantics are supported (the fakes say not).
func New(cs kubernetes.Interface) kubeclient.Interface { return &adapter{cs: cs} }

type adapter struct{ cs kubernetes.Interface }

func (a *adapter) Nodes() kubeclient.ListWatcher[*corev1.NodeList] { return a.cs.CoreV1().Nodes() }

func (a *adapter) Pods(namespace string) kubeclient.ListWatcher[*corev1.PodList] {
	return a.cs.CoreV1().Pods(namespace)
}

func (a *adapter) TokenReviews() kubeclient.Creator[*authenticationv1.TokenReview] {
	return a.cs.AuthenticationV1().TokenReviews()
}

func (a *adapter) SubjectAccessReviews() kubeclient.Creator[*authorizationv1.SubjectAccessReview] {
	return a.cs.AuthorizationV1().SubjectAccessReviews()
}

func (a *adapter) SelfSubjectAccessReviews() kubeclient.Creator[*authorizationv1.SelfSubjectAccessReview] {
	return a.cs.AuthorizationV1().SelfSubjectAccessReviews()
}

// IsWatchListSemanticsUnSupported is what client-go's reflector asks a
// client (k8s.io/client-go/util/watchlist): the fakes answer true.
func (a *adapter) IsWatchListSemanticsUnSupported() bool {
	u, ok := a.cs.(interface{ IsWatchListSemanticsUnSupported() bool })
	return ok && u.IsWatchListSemanticsUnSupported()
}
