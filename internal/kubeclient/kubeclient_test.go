package kubeclient

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// apiserver answers the requests the relay makes the way a kube-apiserver
// does, in protobuf when asked for it (as the real one), and records them.
type apiserver struct {
	t  *testing.T
	mu sync.Mutex
	// requests: "METHOD PATH?QUERY Accept: ..."
	requests []string
	accepts  []string
	bodies   []runtime.Object
}

func (a *apiserver) record(r *http.Request, body runtime.Object) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests = append(a.requests, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
	a.accepts = append(a.accepts, r.Header.Get("Accept"))
	a.bodies = append(a.bodies, body)
}

func (a *apiserver) write(w http.ResponseWriter, r *http.Request, code int, obj runtime.Object) {
	ct := "application/json"
	if strings.HasPrefix(r.Header.Get("Accept"), "application/vnd.kubernetes.protobuf") {
		ct = "application/vnd.kubernetes.protobuf"
	}
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), ct)
	if !ok {
		a.t.Fatalf("no serializer for %s", ct)
	}
	enc := codecs.EncoderForVersion(info.Serializer, obj.GetObjectKind().GroupVersionKind().GroupVersion())
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(code)
	if err := enc.Encode(obj, w); err != nil {
		a.t.Error(err)
	}
}

func (a *apiserver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	node := func(name string) corev1.Node {
		return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "7"},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}}}}
	}
	typed := func(obj runtime.Object, gv, kind string) runtime.Object {
		obj.GetObjectKind().SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind(kind))
		gvk := obj.GetObjectKind().GroupVersionKind()
		gvk.Group, gvk.Version, _ = strings.Cut(gv, "/")
		if gvk.Version == "" {
			gvk.Group, gvk.Version = "", gv
		}
		obj.GetObjectKind().SetGroupVersionKind(gvk)
		return obj
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/nodes" && r.URL.Query().Get("watch") == "true":
		a.record(r, nil)
		flusher := w.(http.Flusher)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		send := func(typ watch.EventType, obj runtime.Object) {
			raw, err := json.Marshal(metav1.WatchEvent{Type: string(typ), Object: runtime.RawExtension{Object: obj}})
			if err != nil {
				a.t.Error(err)
			}
			_, _ = w.Write(append(raw, '\n'))
			flusher.Flush()
		}
		// Watch-list (client-go's default since 1.35): the initial list as
		// events, then a bookmark that ends it.
		if r.URL.Query().Get("sendInitialEvents") == "true" {
			n := node("node-a")
			send(watch.Added, typed(&n, "v1", "Node"))
			send(watch.Bookmark, typed(&corev1.Node{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "7",
				Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}}, "v1", "Node"))
		}
		n := node("node-b")
		n.ResourceVersion = "8"
		send(watch.Added, typed(&n, "v1", "Node"))
		<-r.Context().Done()
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/nodes":
		a.record(r, nil)
		a.write(w, r, http.StatusOK, typed(&corev1.NodeList{ListMeta: metav1.ListMeta{ResourceVersion: "7"}, Items: []corev1.Node{node("node-a")}}, "v1", "NodeList"))
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/pods":
		a.record(r, nil)
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "web-0"}, Spec: corev1.PodSpec{NodeName: "node-a"}}
		a.write(w, r, http.StatusOK, typed(&corev1.PodList{Items: []corev1.Pod{p}}, "v1", "PodList"))
	case r.Method == http.MethodPost && r.URL.Path == "/apis/authentication.k8s.io/v1/tokenreviews":
		tr := &authenticationv1.TokenReview{}
		a.decode(r, tr)
		a.record(r, tr)
		tr.Status = authenticationv1.TokenReviewStatus{Authenticated: tr.Spec.Token == "good", User: authenticationv1.UserInfo{Username: "alice"}}
		a.write(w, r, http.StatusCreated, typed(tr, "authentication.k8s.io/v1", "TokenReview"))
	case r.Method == http.MethodPost && r.URL.Path == "/apis/authorization.k8s.io/v1/subjectaccessreviews":
		sar := &authorizationv1.SubjectAccessReview{}
		a.decode(r, sar)
		a.record(r, sar)
		sar.Status.Allowed = sar.Spec.User == "alice"
		a.write(w, r, http.StatusCreated, typed(sar, "authorization.k8s.io/v1", "SubjectAccessReview"))
	case r.Method == http.MethodPost && r.URL.Path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
		a.record(r, nil)
		a.write(w, r, http.StatusForbidden, typed(&metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonForbidden, Code: http.StatusForbidden,
			Message: `selfsubjectaccessreviews.authorization.k8s.io is forbidden`}, "v1", "Status"))
	default:
		a.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		http.NotFound(w, r)
	}
}

func (a *apiserver) decode(r *http.Request, into runtime.Object) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), r.Header.Get("Content-Type"))
	if !ok {
		a.t.Fatalf("request body in %q", r.Header.Get("Content-Type"))
	}
	if _, _, err := info.Serializer.Decode(body, nil, into); err != nil {
		a.t.Fatalf("decoding the request body: %v", err)
	}
}

func newClient(t *testing.T, contentType string) (*Client, *apiserver) {
	t.Helper()
	a := &apiserver{t: t}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	c, err := NewForConfig(&rest.Config{Host: srv.URL, ContentConfig: rest.ContentConfig{ContentType: contentType}})
	if err != nil {
		t.Fatal(err)
	}
	return c, a
}

// The requests and decoding of client-go's typed clients, in protobuf (their
// default for built-in types) and in JSON when the config asks for it.
func TestClient(t *testing.T) {
	for _, ct := range []string{"", "application/json"} {
		t.Run("content-type="+ct, func(t *testing.T) {
			c, a := newClient(t, ct)
			ctx := context.Background()

			nodes, err := c.Nodes().List(ctx, metav1.ListOptions{LabelSelector: "role=worker", FieldSelector: "metadata.name=node-a", Limit: 500})
			if err != nil {
				t.Fatal(err)
			}
			if len(nodes.Items) != 1 || nodes.Items[0].Name != "node-a" || nodes.Items[0].Status.Addresses[0].Address != "10.0.0.1" || nodes.ResourceVersion != "7" {
				t.Errorf("nodes: %+v", nodes)
			}
			pods, err := c.Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-a"})
			if err != nil {
				t.Fatal(err)
			}
			if len(pods.Items) != 1 || pods.Items[0].Spec.NodeName != "node-a" || pods.Items[0].Namespace != "team-a" {
				t.Errorf("pods: %+v", pods)
			}
			tr, err := c.TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: "good"}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !tr.Status.Authenticated || tr.Status.User.Username != "alice" {
				t.Errorf("TokenReview status %+v", tr.Status)
			}
			sar, err := c.SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: "alice",
				NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/metrics", Verb: "get"}}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !sar.Status.Allowed {
				t.Errorf("SubjectAccessReview not allowed: %+v", sar)
			}
			_, err = c.SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{}, metav1.CreateOptions{})
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "selfsubjectaccessreviews.authorization.k8s.io is forbidden") {
				t.Errorf("SelfSubjectAccessReview: want the apiserver's 403 Status, got %v", err)
			}

			want := []string{
				"GET /api/v1/nodes?fieldSelector=metadata.name%3Dnode-a&labelSelector=role%3Dworker&limit=500",
				"GET /api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a",
				"POST /apis/authentication.k8s.io/v1/tokenreviews?",
				"POST /apis/authorization.k8s.io/v1/subjectaccessreviews?",
				"POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews?",
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			if strings.Join(a.requests, "\n") != strings.Join(want, "\n") {
				t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(a.requests, "\n"), strings.Join(want, "\n"))
			}
			wantAccept := "application/vnd.kubernetes.protobuf,application/json"
			if ct != "" {
				wantAccept = ct + ", */*"
			}
			for i, got := range a.accepts {
				if got != wantAccept {
					t.Errorf("%s: Accept %q, want %q", a.requests[i], got, wantAccept)
				}
			}
			if body, ok := a.bodies[2].(*authenticationv1.TokenReview); !ok || body.Spec.Token != "good" {
				t.Errorf("TokenReview body %+v", a.bodies[2])
			}
		})
	}
}

// An informer on ListWatch gets the initial list through a watch-list
// stream (client-go's default), then the changes, with the tweak applied.
func TestListWatchInformer(t *testing.T) {
	c, a := newClient(t, "")
	lw := ListWatch(c, c.Nodes(), func(o *metav1.ListOptions) { o.LabelSelector = "role=worker" })
	inf := cache.NewSharedIndexInformer(lw, &corev1.Node{}, 0, cache.Indexers{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go inf.Run(ctx.Done())
	deadline := time.Now().Add(10 * time.Second)
	for len(inf.GetStore().ListKeys()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("informer has %v, want node-a (list) and node-b (watch)", inf.GetStore().ListKeys())
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.requests) == 0 || !strings.Contains(a.requests[0], "sendInitialEvents=true") || !strings.Contains(a.requests[0], "watch=true") {
		t.Errorf("first request is not a watch-list: %v", a.requests)
	}
	for _, r := range a.requests {
		if !strings.Contains(r, "labelSelector=role%3Dworker") {
			t.Errorf("request without the tweak's selector: %s", r)
		}
	}
}
