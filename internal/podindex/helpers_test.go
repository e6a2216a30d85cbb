package podindex

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kfake "k8s.io/client-go/kubernetes/fake"
	mfake "k8s.io/client-go/metadata/fake"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/kubeclient/clientset"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/poll"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fakeClock is the injected clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

func ref(kind, name string, controller bool) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "v1", Kind: kind, Name: name, UID: types.UID("uid-" + name), Controller: &controller}
}

func mkPod(ns, name, node string, labels map[string]string, owners ...metav1.OwnerReference) *v1.Pod {
	return &v1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name),
			Labels: labels, OwnerReferences: owners,
			Annotations:   map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}},
		},
		Spec:   v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c", Image: "registry.example/app:1"}}},
		Status: v1.PodStatus{Phase: v1.PodRunning, PodIP: "10.0.0.1"},
	}
}

func mkReplicaSet(ns, name string, owners ...metav1.OwnerReference) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, OwnerReferences: owners, Annotations: map[string]string{"deployment.kubernetes.io/revision": "1"}},
	}
}

func mkJob(ns, name string, owners ...metav1.OwnerReference) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, OwnerReferences: owners},
	}
}

type bed struct {
	ix    *Index
	pods  *kfake.Clientset
	meta  *mfake.FakeMetadataClient
	clock *fakeClock
	reg   *prometheus.Registry
}

func testOptions(clock *fakeClock, reg prometheus.Registerer) Options {
	o := DefaultOptions()
	o.Labels = enrich.KeyMapper{AllowAll: true}
	o.Workload = true
	o.Logger = discard()
	o.Registerer = reg
	o.Now = clock.Now
	return o
}

// startBed runs an index on fake clientsets holding objs (Pods go to the
// typed client, PartialObjectMetadata to the metadata client).
func startBed(t testing.TB, tweak func(*Options), objs ...runtime.Object) *bed {
	t.Helper()
	var pods, metas []runtime.Object
	for _, o := range objs {
		if _, ok := o.(*v1.Pod); ok {
			pods = append(pods, o)
		} else {
			metas = append(metas, o)
		}
	}
	scheme := mfake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	b := &bed{pods: kfake.NewClientset(pods...), meta: mfake.NewSimpleMetadataClient(scheme, metas...), clock: newClock(), reg: prometheus.NewRegistry()}
	o := testOptions(b.clock, b.reg)
	if tweak != nil {
		tweak(&o)
	}
	cfg, err := o.Config()
	if err != nil {
		t.Fatal(err)
	}
	b.ix = New(cfg, clientset.New(b.pods), b.meta)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.ix.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if !b.ix.WaitForSync(wctx) || !b.ix.Synced() {
		t.Fatal("informers did not sync")
	}
	return b
}

var eventually = poll.Until

func labelMap(ls []enrich.Label) map[string]string {
	m := map[string]string{}
	for _, l := range ls {
		m[l.Name] = l.Value
	}
	return m
}
