package mixin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/nsindex"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relay"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/remotewrite"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/version"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"
)

// scrapeLabels are the labels a Prometheus scrape (and prometheus-operator's ServiceMonitor) adds to every
// self-metric; `up` is the series the scrape itself writes.
var scrapeLabels = []string{"job", "instance", "namespace", "pod", "container", "service", "endpoint"}

// exposed runs the relay's real pipeline in-process, wired as `kubelet-meta-proxy run` wires it (a Namespace
// informer on a fake apiserver, the scrape manager with one good and one unreachable --target, remote write to
// a local receiver), and returns every series name its self registry exposes with the label names each has.
// Vectors only show once they have children, so it waits until every family the pipeline makes has appeared.
func exposed(t *testing.T) map[string]map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), version.NewBuildInfoCollector())

	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	ns := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: "frontend", Labels: map[string]string{"team": "frontend"}}}
	allow, _ := enrich.ParseAllowlist("team")
	index := nsindex.New(metadatafake.NewSimpleMetadataClient(scheme, []runtime.Object{ns}...),
		enrich.NamespaceMapper{Labels: enrich.KeyMapper{Allow: allow}}, 0, logger, reg)
	infCtx, stopInformer := context.WithCancel(ctx)
	defer stopInformer()
	go index.Run(infCtx)
	if !index.WaitForSync(ctx) {
		t.Fatal("namespace informer did not sync")
	}

	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()
	q := remotewrite.DefaultQueueConfig()
	q.BatchSendDeadline = 20 * time.Millisecond
	writer, err := remotewrite.New(remotewrite.Config{
		Endpoints:       []remotewrite.EndpointConfig{{URL: receiver.URL, Timeout: 5 * time.Second, Queue: q}},
		ShutdownTimeout: 5 * time.Second,
	}, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	rwCtx, stopWriter := context.WithCancel(ctx)
	rwDone := make(chan error, 1)
	go func() { rwDone <- writer.Run(rwCtx) }()

	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, "# TYPE container_cpu_usage_seconds_total counter\n"+
			"container_cpu_usage_seconds_total{namespace=\"frontend\",pod=\"web-1\"} 1\n"+
			"container_cpu_usage_seconds_total{namespace=\"unknown\",pod=\"web-2\"} 1\n"+
			"machine_cpu_cores 2\n")
	}))
	defer target.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/metrics"
	ln.Close() // nothing listens there any more: every scrape fails
	var targets []*scrape.Target
	for _, u := range []string{target.URL + "/metrics", dead} {
		tg, err := scrape.PlainTarget(u, "test")
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, tg)
	}
	mgr := relay.NewManager(relay.ManagerConfig{
		Interval: 100 * time.Millisecond, Timeout: time.Second, MaxConcurrency: 2, HonorTimestamps: true,
		PlainFetcher: &scrape.HTTPFetcher{Client: target.Client(), Limit: 1 << 20},
		Namespaces:   index, View: view.NewView(), Sink: writer, Logger: logger, Registerer: reg,
	})
	mgr.Sync(ctx, targets)

	// Families that only appear once the pipeline has run.
	late := []string{"kubelet_meta_proxy_target_scrape_errors_total", "kubelet_meta_proxy_target_up",
		"kubelet_meta_proxy_remote_write_request_duration_seconds", "kubelet_meta_proxy_remote_write_samples_sent_total"}
	var fams []*dto.MetricFamily
	for {
		if fams, err = reg.Gather(); err != nil {
			t.Fatalf("gather: %v", err)
		}
		have := map[string]bool{}
		for _, f := range fams {
			have[f.GetName()] = len(f.GetMetric()) > 0
		}
		missing := ""
		for _, n := range late {
			if !have[n] {
				missing = n
			}
		}
		if missing == "" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the in-process relay never exposed %s", missing)
		case <-time.After(50 * time.Millisecond):
		}
	}
	mgr.Stop()
	stopWriter()
	if err := <-rwDone; err != nil {
		t.Fatalf("remote write: %v", err)
	}

	out := map[string]map[string]bool{"up": {}}
	for _, l := range scrapeLabels {
		out["up"][l] = true
	}
	add := func(name string, labels map[string]bool, extra ...string) {
		m := map[string]bool{}
		for l := range labels {
			m[l] = true
		}
		for _, l := range append(scrapeLabels, extra...) {
			m[l] = true
		}
		out[name] = m
	}
	for _, f := range fams {
		labels := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = true
			}
		}
		name := f.GetName()
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			add(name+"_bucket", labels, "le")
			add(name+"_count", labels)
			add(name+"_sum", labels)
		case dto.MetricType_SUMMARY:
			add(name, labels, "quantile")
			add(name+"_count", labels)
			add(name+"_sum", labels)
		default:
			add(name, labels)
		}
	}
	return out
}
