package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// The on-demand components are built (or found fresh in bin/) and started once, by the first
// test that needs them: the rest of the suite never waits for them.
var (
	cortexOnce sync.Once
	theCortex  *bed.Cortex
	cortexErr  error
	ksmBuild   sync.Once
	ksmErr     error
)

func needCortex(t *testing.T) (*bed.Bed, *bed.Cortex) {
	t.Helper()
	b := needBed(t)
	cortexOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		root, err := bed.RepoRoot()
		if err == nil {
			err = bed.BuildExtra(ctx, root, os.Stderr, "cortex")
		}
		if err == nil {
			theCortex, err = b.StartCortex(ctx, bed.CortexOptions{})
		}
		cortexErr = err
	})
	if cortexErr != nil {
		t.Fatal(cortexErr)
	}
	return b, theCortex
}

// needKSMBinary builds kube-state-metrics into bin/ once (or finds it fresh there) for the
// tests that run it.
func needKSMBinary(t *testing.T, ctx context.Context) {
	t.Helper()
	ksmBuild.Do(func() {
		root, err := bed.RepoRoot()
		if err == nil {
			err = bed.BuildExtra(ctx, root, os.Stderr, "kube-state-metrics")
		}
		ksmErr = err
	})
	if ksmErr != nil {
		t.Fatal(ksmErr)
	}
}

// rwSeries is one series of a remote-write request.
type rwSeries struct {
	labels map[string]string
	v      float64
}

// pushTenant sends one remote-write request for tenant (none if "") and returns the status
// and body.
func pushTenant(ctx context.Context, url, tenant string, ts time.Time, series ...rwSeries) (int, string, error) {
	wr := &prompb.WriteRequest{}
	for _, s := range series {
		var ls []prompb.Label
		for k, v := range s.labels {
			ls = append(ls, prompb.Label{Name: k, Value: v})
		}
		sortLabels(ls)
		wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: s.v, Timestamp: ts.UnixMilli()}}})
	}
	raw, err := wr.Marshal()
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(body)), nil
}

func TestCortexTenantIsolation(t *testing.T) {
	_, c := needCortex(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	// Tenant names unique to this run: Cortex keeps data across tests of the package.
	ta, tb := "iso-a", "iso-b"
	now := time.Now()
	for _, tn := range []string{ta, tb} {
		code, body, err := pushTenant(ctx, c.PushURL, tn, now,
			rwSeries{map[string]string{"__name__": "kmp_infra_iso", "tenant": tn, "i": "1"}, 1},
			rwSeries{map[string]string{"__name__": "kmp_infra_iso", "tenant": tn, "i": "2"}, 2})
		if err != nil || code != http.StatusOK {
			t.Fatalf("push %s: %d %s %v", tn, code, body, err)
		}
	}
	if code, body, err := pushTenant(ctx, c.PushURL, "", now, rwSeries{map[string]string{"__name__": "kmp_infra_iso"}, 1}); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("push without X-Scope-OrgID: %d %s %v, want 401", code, body, err)
	}
	for _, tn := range []string{ta, tb} {
		res, err := c.WaitQuery(ctx, tn, `kmp_infra_iso`, time.Minute, func(s []bed.Sample) bool { return len(s) >= 2 })
		if err != nil {
			t.Fatalf("tenant %s: %v\n%s", tn, err, c.Logs(30))
		}
		if len(res) != 2 {
			t.Fatalf("tenant %s: %d series, want 2: %v", tn, len(res), res)
		}
		for _, s := range res {
			if s.Metric["tenant"] != tn {
				t.Errorf("tenant %s sees a series of %s: %v", tn, s.Metric["tenant"], s.Metric)
			}
		}
	}
	if res, err := c.Query(ctx, "iso-nobody", `kmp_infra_iso`); err != nil || len(res) != 0 {
		t.Fatalf("a third tenant: %v %v, want nothing", res, err)
	}
}

func TestCortexHATracker(t *testing.T) {
	_, c := needCortex(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	const tn = "ha-tenant"
	if err := c.SetTenantLimits(ctx, tn, map[string]any{"accept_ha_samples": true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.SetTenantLimits(context.Background(), tn, nil) })
	push := func(replica string, v float64) (int, string) {
		code, body, err := pushTenant(ctx, c.PushURL, tn, time.Now(),
			rwSeries{map[string]string{"__name__": "kmp_infra_ha", "cluster": "pair", "__replica__": replica}, v})
		if err != nil {
			t.Fatal(err)
		}
		return code, body
	}
	if code, body := push("r1", 1); code != http.StatusOK {
		t.Fatalf("first replica: %d %s, want 200", code, body)
	}
	code, body := push("r2", 2)
	if code != http.StatusAccepted || !strings.Contains(body, "replicas did not match") {
		t.Fatalf("second replica: %d %q, want 202 replicas did not match", code, body)
	}
	if code, body := push("r1", 3); code != http.StatusOK {
		t.Fatalf("elected replica again: %d %s, want 200", code, body)
	}
	res, err := c.WaitQuery(ctx, tn, `kmp_infra_ha`, time.Minute, func(s []bed.Sample) bool { return len(s) == 1 && s[0].V == 3 })
	if err != nil {
		t.Fatalf("%v: %v", err, res)
	}
	if _, ok := res[0].Metric["__replica__"]; ok || res[0].Metric["cluster"] != "pair" {
		t.Fatalf("deduplicated series %v: want cluster kept and __replica__ removed", res[0].Metric)
	}
}

func TestCortexTenantLimit(t *testing.T) {
	_, c := needCortex(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	const limited, free = "limit-low", "limit-free"
	if err := c.SetTenantLimits(ctx, limited, map[string]any{"ingestion_rate": 1, "ingestion_burst_size": 1}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.SetTenantLimits(context.Background(), limited, nil) })
	var series []rwSeries
	for i := range 20 {
		series = append(series, rwSeries{map[string]string{"__name__": "kmp_infra_limit", "i": fmt.Sprint(i)}, 1})
	}
	code, body, err := pushTenant(ctx, c.PushURL, limited, time.Now(), series...)
	if err != nil || code != http.StatusTooManyRequests {
		t.Fatalf("tenant over its limit: %d %s %v, want 429", code, body, err)
	}
	code, body, err = pushTenant(ctx, c.PushURL, free, time.Now(), series...)
	if err != nil || code != http.StatusOK {
		t.Fatalf("other tenant: %d %s %v, want 200", code, body, err)
	}
}

func TestKubeStateMetrics(t *testing.T) {
	b := needBed(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	needKSMBinary(t, ctx)
	// The objects: a pod owned by a ReplicaSet (no controller manager: the owner reference is
	// set by hand) in a labelled namespace.
	const ns, pod = "frontend-service1", "kmp-infra-ksm"
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
	if _, err := b.Client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	no := false
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: ns, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "kmp-infra-ksm-rs", UID: types.UID("00000000-0000-0000-0000-00000000cafe"), Controller: new(true),
		}}},
		Spec: corev1.PodSpec{NodeName: "node-1", AutomountServiceAccountToken: &no, Containers: []corev1.Container{{Name: "c", Image: "example.invalid/none"}}},
	}
	if _, err := b.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		_ = b.Client.CoreV1().Pods(ns).Delete(context.Background(), pod, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	k, err := b.StartKubeStateMetrics(ctx, "--resources=namespaces,pods", "--metric-labels-allowlist=namespaces=[team]")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Stop()
	prom, err := b.StartPrometheus2(ctx, bed.PromOptions{Name: "prometheus-ksm", Config: "global:\n  scrape_interval: 1s\nscrape_configs:\n" + k.ScrapeJob()})
	if err != nil {
		t.Fatal(err)
	}
	defer prom.Stop()
	owner, err := prom.WaitQuery(ctx, fmt.Sprintf(`kube_pod_owner{namespace=%q,pod=%q}`, ns, pod), time.Minute, bed.NonEmpty)
	if err != nil {
		t.Fatalf("%v\n%s", err, k.Logs(20))
	}
	if m := owner[0].Metric; m["owner_kind"] != "ReplicaSet" || m["owner_name"] != "kmp-infra-ksm-rs" || m["owner_is_controller"] != "true" {
		t.Fatalf("kube_pod_owner %v", m)
	}
	labels, err := prom.WaitQuery(ctx, `kube_namespace_labels{namespace=~"frontend-service1|unlabelled-service"}`, time.Minute, func(s []bed.Sample) bool { return len(s) == 2 })
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range labels {
		if got, exp := s.Metric["label_team"], map[string]string{"frontend-service1": "frontend", "unlabelled-service": ""}[s.Metric["namespace"]]; got != exp {
			t.Fatalf("kube_namespace_labels %v: label_team %q, want %q", s.Metric, got, exp)
		}
	}
}
