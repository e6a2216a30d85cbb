package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kfake "k8s.io/client-go/kubernetes/fake"
	mfake "k8s.io/client-go/metadata/fake"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/kubeclient/clientset"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/podindex"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relay"
)

func TestPodFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		enabled bool
		check   relay.NodeCheck
		err     string
	}{
		{args: nil, enabled: false, check: relay.NodeCheckOff},
		{args: []string{"--pod-labels=app,team"}, enabled: true, check: relay.NodeCheckPlain},
		{args: []string{"--pod-labels=*", "--pod-label-prefix=pod_"}, enabled: true, check: relay.NodeCheckPlain},
		{args: []string{"--workload-labels"}, enabled: true, check: relay.NodeCheckPlain},
		{args: []string{"--workload-labels", "--pod-node-check=drop"}, enabled: true, check: relay.NodeCheckDrop},
		{args: []string{"--workload-labels", "--pod-node-check=off"}, enabled: true, check: relay.NodeCheckOff},
		// Setting the check alone turns the index on.
		{args: []string{"--pod-node-check=plain"}, enabled: true, check: relay.NodeCheckPlain},
		{args: []string{"--pod-node-check=maybe"}, err: `--pod-node-check="maybe"`},
		{args: []string{"--label-precedence=node"}, err: `--label-precedence="node"`},
		{args: []string{"--pod-labels=app", "--pod-label-prefix=9x"}, err: `--pod-label-prefix="9x"`},
		{args: []string{"--pod-label-prefix=pod_"}, err: "--pod-label-prefix needs --pod-labels"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			o, fs := runFlags()
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := o.pod.Validate()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Validate() = %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.pod.enabled() != tc.enabled || o.pod.check() != tc.check {
				t.Fatalf("enabled %v check %v, want %v %v", o.pod.enabled(), o.pod.check(), tc.enabled, tc.check)
			}
		})
	}
}

// TestScrapeOnceHasRunsSharedFlags: scrape-once registers the flags it
// shares with run (pod flags included) through the same commonOptions, with
// the same defaults and help, and validates them the same way.
func TestScrapeOnceHasRunsSharedFlags(t *testing.T) {
	shared := pflag.NewFlagSet("common", pflag.ContinueOnError)
	(&commonOptions{}).AddFlags(shared)
	run, once := newRunCommand().Flags(), newScrapeOnceCommand().Flags()
	for _, name := range []string{"pod-labels", "pod-label-prefix", "workload-labels", "pod-node-check", "label-precedence", "pod-deleted-grace", "pod-unknown-grace"} {
		if shared.Lookup(name) == nil {
			t.Errorf("--%s is not a shared flag", name)
		}
	}
	shared.VisitAll(func(f *pflag.Flag) {
		for cmd, fs := range map[string]*pflag.FlagSet{"run": run, "scrape-once": once} {
			g := fs.Lookup(f.Name)
			if g == nil || g.DefValue != f.DefValue || g.Usage != f.Usage {
				t.Errorf("%s --%s: %+v, want %+v", cmd, f.Name, g, f)
			}
		}
	})
	for _, tc := range []struct{ args, want []string }{
		{[]string{"--pod-node-check=maybe"}, []string{`--pod-node-check="maybe"`}},
		{[]string{"--workload-labels", "--pod-deleted-grace=-1s"}, []string{"--pod-deleted-grace=-1s"}},
	} {
		err := execute(t, newScrapeOnceCommand(), append([]string{"scrape-once"}, tc.args...))
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("scrape-once %q: %v, want an error with %q", tc.args, err, w)
			}
		}
	}
}

func TestPodGraceFlags(t *testing.T) {
	for _, tc := range []struct {
		args             []string
		deleted, unknown time.Duration
		err              string
	}{
		{args: []string{"--workload-labels"}, deleted: podindex.DefaultDeletedGrace, unknown: podindex.DefaultUnknownGrace},
		{args: []string{"--workload-labels", "--pod-deleted-grace=30s", "--pod-unknown-grace=0s"}, deleted: 30 * time.Second},
		{args: []string{"--pod-deleted-grace=-5m"}, err: "--pod-deleted-grace=-5m0s: must not be negative"},
		{args: []string{"--pod-unknown-grace=-1s"}, err: "--pod-unknown-grace=-1s: must not be negative"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			o, fs := runFlags()
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := o.Validate()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Validate() = %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			opts := o.pod.options(&o.kube, discardLogger(), nil)
			if opts.DeletedGrace != tc.deleted || opts.UnknownGrace != tc.unknown {
				t.Fatalf("graces %v %v, want %v %v", opts.DeletedGrace, opts.UnknownGrace, tc.deleted, tc.unknown)
			}
			if _, err := opts.Config(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestListInto: scrape-once's one-shot lists feed the index through the
// same transforms the informers use: a node's pods only, workloads resolved
// through ReplicaSet and Job metadata.
func TestListInto(t *testing.T) {
	ctl := true
	own := func(kind, name string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{Kind: kind, Name: name, Controller: &ctl}}
	}
	pod := func(name, node string, owners []metav1.OwnerReference) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{"app": "web", "tier": "x"}, OwnerReferences: owners},
			Spec: corev1.PodSpec{NodeName: node}}
	}
	meta := func(kind, name string, owners []metav1.OwnerReference) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: kind}, ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, OwnerReferences: owners}}
	}
	kube := kfake.NewClientset(
		pod("web-7d9f-abcde", "node-a", own("ReplicaSet", "web-7d9f")),
		pod("report-123-xyz", "node-a", own("Job", "report-123")),
		pod("web-7d9f-fghij", "node-b", own("ReplicaSet", "web-7d9f")),
	)
	scheme := mfake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	rs := meta("ReplicaSet", "web-7d9f", own("Deployment", "web"))
	rs.APIVersion = "apps/v1"
	job := meta("Job", "report-123", own("CronJob", "report"))
	job.APIVersion = "batch/v1"
	md := mfake.NewSimpleMetadataClient(scheme, rs, job)

	o, fs := runFlags()
	if err := fs.Parse([]string{"--workload-labels", "--pod-labels=app", "--mode=kubelet", "--node-name-or-ip=node-a"}); err != nil {
		t.Fatal(err)
	}
	opts := o.pod.options(&o.kube, discardLogger(), nil)
	cfg, err := opts.Config()
	if err != nil {
		t.Fatal(err)
	}
	ix := podindex.NewStatic(cfg)
	if err := listInto(context.Background(), ix, clientset.New(kube), md, opts.Node, opts.Workload); err != nil {
		t.Fatal(err)
	}
	snap := ix.Snapshot()
	for name, want := range map[string]string{"web-7d9f-abcde": "web/deployment", "report-123-xyz": "report/CronJob"} {
		info, ok := snap.Lookup("shop", name)
		got := map[string]string{}
		for _, l := range info.Labels() {
			got[l.Name] = l.Value
		}
		if !ok || got["workload"]+"/"+got["workload_type"] != want || got["app"] != "web" || got["tier"] != "" {
			t.Errorf("%s: %v %v, want workload %s and app only", name, ok, got, want)
		}
	}
	if _, ok := snap.Lookup("shop", "web-7d9f-fghij"); ok {
		t.Error("a pod of another node was listed")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
