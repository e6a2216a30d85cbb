// Package kubeclient is the relay's Kubernetes API client: the few typed
// calls it makes (list and watch Nodes and Pods, create TokenReviews and
// (Self)SubjectAccessReviews) and the core/v1 REST client of the node proxy,
// on k8s.io/client-go/rest with a scheme of core/v1, authentication/v1 and
// authorization/v1 only.
//
// client-go's typed clientset (k8s.io/client-go/kubernetes) would do the
// same, but it and k8s.io/client-go/kubernetes/scheme, which each of its
// typed clients imports, link every API group of k8s.io/api and their
// apply configurations: about 40% of the binary, nearly all of it resident
// (issue 17). internal/archtest keeps the binary off them. Namespaces,
// ReplicaSets and Jobs are read through k8s.io/client-go/metadata.
//
// The methods have the signatures of client-go's typed clients, so a typed
// clientset (a fake in the tests: kubeclient/clientset) can stand in.
package kubeclient

import (
	"context"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"
)

// ListWatcher lists and watches one resource, as a typed client does.
type ListWatcher[L runtime.Object] interface {
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// Creator creates objects of one resource, as a typed client does.
type Creator[T runtime.Object] interface {
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
}

// Interface is what the relay asks of the Kubernetes API besides metadata.
type Interface interface {
	Nodes() ListWatcher[*corev1.NodeList]
	Pods(namespace string) ListWatcher[*corev1.PodList]
	TokenReviews() Creator[*authenticationv1.TokenReview]
	SubjectAccessReviews() Creator[*authorizationv1.SubjectAccessReview]
	SelfSubjectAccessReviews() Creator[*authorizationv1.SelfSubjectAccessReview]
}

// Scheme holds the types the relay decodes: core/v1, authentication/v1,
// authorization/v1 and the unversioned meta types (Status, WatchEvent, the
// options).
var Scheme = runtime.NewScheme()

var (
	codecs         = serializer.NewCodecFactory(Scheme)
	parameterCodec = runtime.NewParameterCodec(Scheme)
)

func init() {
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	utilruntime.Must(corev1.AddToScheme(Scheme))
	utilruntime.Must(authenticationv1.AddToScheme(Scheme))
	utilruntime.Must(authorizationv1.AddToScheme(Scheme))
}

// Client is the API client. Its zero value is not usable: NewForConfig.
type Client struct {
	core, authn, authz *rest.RESTClient
}

var _ Interface = (*Client)(nil)

// NewForConfig returns a client for cfg (as kubernetes.NewForConfig: one
// HTTP client shared by the API groups).
func NewForConfig(cfg *rest.Config) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.RateLimiter == nil && cfg.QPS > 0 {
		// One limiter for the groups, as the clientset shares one.
		if cfg.Burst <= 0 {
			return nil, fmt.Errorf("burst is required to be greater than 0 when RateLimiter is not set and QPS is set to greater than 0")
		}
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	c := &Client{}
	for _, g := range []struct {
		rc      **rest.RESTClient
		apiPath string
		gv      schema.GroupVersion
	}{
		{&c.core, "/api", corev1.SchemeGroupVersion},
		{&c.authn, "/apis", authenticationv1.SchemeGroupVersion},
		{&c.authz, "/apis", authorizationv1.SchemeGroupVersion},
	} {
		gc := rest.CopyConfig(cfg)
		gc.APIPath = g.apiPath
		gv := g.gv
		gc.GroupVersion = &gv
		gc.NegotiatedSerializer = codecs.WithoutConversion()
		if gc.UserAgent == "" {
			gc.UserAgent = rest.DefaultKubernetesUserAgent()
		}
		if *g.rc, err = rest.RESTClientForConfigAndClient(gc, hc); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// CoreV1 is the core/v1 REST client (the node proxy, /version).
func (c *Client) CoreV1() rest.Interface { return c.core }

// Nodes lists and watches Nodes.
func (c *Client) Nodes() ListWatcher[*corev1.NodeList] {
	return &resource[*corev1.NodeList]{client: c.core, resource: "nodes", newList: func() *corev1.NodeList { return &corev1.NodeList{} }}
}

// Pods lists and watches the Pods of namespace ("": all).
func (c *Client) Pods(namespace string) ListWatcher[*corev1.PodList] {
	return &resource[*corev1.PodList]{client: c.core, resource: "pods", namespace: namespace, newList: func() *corev1.PodList { return &corev1.PodList{} }}
}

// TokenReviews creates TokenReviews.
func (c *Client) TokenReviews() Creator[*authenticationv1.TokenReview] {
	return &creator[*authenticationv1.TokenReview]{client: c.authn, resource: "tokenreviews", newObj: func() *authenticationv1.TokenReview { return &authenticationv1.TokenReview{} }}
}

// SubjectAccessReviews creates SubjectAccessReviews.
func (c *Client) SubjectAccessReviews() Creator[*authorizationv1.SubjectAccessReview] {
	return &creator[*authorizationv1.SubjectAccessReview]{client: c.authz, resource: "subjectaccessreviews", newObj: func() *authorizationv1.SubjectAccessReview { return &authorizationv1.SubjectAccessReview{} }}
}

// SelfSubjectAccessReviews creates SelfSubjectAccessReviews.
func (c *Client) SelfSubjectAccessReviews() Creator[*authorizationv1.SelfSubjectAccessReview] {
	return &creator[*authorizationv1.SelfSubjectAccessReview]{client: c.authz, resource: "selfsubjectaccessreviews", newObj: func() *authorizationv1.SelfSubjectAccessReview { return &authorizationv1.SelfSubjectAccessReview{} }}
}

// resource makes the requests of client-go's generated List and Watch
// (gentype): protobuf unless the config names a content type.
type resource[L runtime.Object] struct {
	client    *rest.RESTClient
	resource  string
	namespace string
	newList   func() L
}

func timeout(opts *metav1.ListOptions) time.Duration {
	if opts.TimeoutSeconds != nil {
		return time.Duration(*opts.TimeoutSeconds) * time.Second
	}
	return 0
}

func (r *resource[L]) List(ctx context.Context, opts metav1.ListOptions) (L, error) {
	list := r.newList()
	err := r.client.Get().UseProtobufAsDefault().
		NamespaceIfScoped(r.namespace, r.namespace != "").
		Resource(r.resource).
		VersionedParams(&opts, parameterCodec).
		Timeout(timeout(&opts)).
		Do(ctx).
		Into(list)
	return list, err
}

func (r *resource[L]) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return r.client.Get().UseProtobufAsDefault().
		NamespaceIfScoped(r.namespace, r.namespace != "").
		Resource(r.resource).
		VersionedParams(&opts, parameterCodec).
		Timeout(timeout(&opts)).
		Watch(ctx)
}

type creator[T runtime.Object] struct {
	client   *rest.RESTClient
	resource string
	newObj   func() T
}

func (c *creator[T]) Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error) {
	result := c.newObj()
	err := c.client.Post().UseProtobufAsDefault().
		Resource(c.resource).
		VersionedParams(&opts, parameterCodec).
		Body(obj).
		Do(ctx).
		Into(result)
	return result, err
}

// ListWatch is a cache.ListerWatcher of lw's objects with tweak (may be
// nil) applied to the options of every request. As client-go's own
// informers do, it uses watch-list semantics (a streamed initial list)
// unless client says it does not support them (client-go's fakes).
func ListWatch[L runtime.Object](client any, lw ListWatcher[L], tweak func(*metav1.ListOptions)) cache.ListerWatcher {
	if tweak == nil {
		tweak = func(*metav1.ListOptions) {}
	}
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			return lw.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return lw.Watch(ctx, o)
		},
	}, client)
}
