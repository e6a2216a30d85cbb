// Package e2e holds the end-to-end tests: one test bed (real etcd, kube-apiserver, fake
// kubelets in a netns, Prometheus, Alertmanager) comes up once in TestMain for the package.
package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

var (
	theBed     *bed.Bed
	skipReason string
	relayErr   error // the relay binary's build error: tests that start the relay fail with it
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	if os.Geteuid() != 0 {
		skipReason = "e2e needs root (it makes a network namespace)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		skipReason = "e2e needs the ip command (iproute2)"
	}
	if skipReason != "" || testing.Short() {
		if skipReason == "" {
			skipReason = "e2e skipped in -short mode"
		}
		return m.Run()
	}
	root, err := bed.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	if relayErr, err = bed.Build(ctx, root, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: binaries ready in %s\n", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	// E2E_KEEP_DIR=1 keeps the bed's dir (configs, data, every component's log) after the run.
	theBed, err = bed.Start(ctx, bed.Options{Nodes: 3, Log: os.Stderr, KeepDir: os.Getenv("E2E_KEEP_DIR") != ""})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: bed up in %s\n", time.Since(start).Round(time.Millisecond))
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: failed; component logs:\n%s", theBed.LogTails(40))
	}
	theBed.Stop()
	return code
}

// needBed returns the bed or skips (not root / no ip only).
func needBed(t *testing.T) *bed.Bed {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if theBed == nil {
		t.Fatal("no bed")
	}
	return theBed
}

func parseText(t *testing.T, body []byte) map[string][]map[string]string {
	t.Helper()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	out := map[string][]map[string]string{}
	for name, f := range fams {
		for _, m := range f.Metric {
			l := map[string]string{}
			for _, p := range m.Label {
				l[p.GetName()] = p.GetValue()
			}
			if m.TimestampMs != nil {
				l["__ts__"] = fmt.Sprint(m.GetTimestampMs())
			}
			out[name] = append(out[name], l)
		}
	}
	return out
}

func TestBedNodesRegistered(t *testing.T) {
	b := needBed(t)
	ctx := t.Context()
	nodes, err := b.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 3 {
		t.Fatalf("want 3 nodes, got %d", len(nodes.Items))
	}
	for _, n := range nodes.Items {
		bn := b.Node(n.Name)
		if bn == nil {
			t.Fatalf("node %s unknown to the bed", n.Name)
		}
		if n.Status.Addresses[0].Address != bn.IP || n.Status.DaemonEndpoints.KubeletEndpoint.Port != bed.KubeletPort {
			t.Fatalf("node %s status %+v", n.Name, n.Status)
		}
	}
	nss, err := b.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: "team=frontend"})
	if err != nil {
		t.Fatal(err)
	}
	if len(nss.Items) != 2 {
		t.Fatalf("want 2 frontend namespaces, got %d", len(nss.Items))
	}
}

// The apiserver's node proxy, with the relay's token, returns the rewritten capture.
func TestBedProxyCadvisor(t *testing.T) {
	b := needBed(t)
	ctx := t.Context()
	for _, n := range b.Nodes() {
		code, body, err := b.ProxyGet(ctx, n.Name, "/metrics/cadvisor", "")
		if err != nil || code != http.StatusOK {
			t.Fatalf("%s: proxy GET: %d %v: %.300s", n.Name, code, err, body)
		}
		fams := parseText(t, body)
		ws := fams["container_memory_working_set_bytes"]
		if len(ws) == 0 {
			t.Fatalf("%s: no container_memory_working_set_bytes", n.Name)
		}
		perNS := map[string]int{}
		var newest int64
		for _, l := range ws {
			perNS[l["namespace"]]++
			var ts int64
			fmt.Sscan(l["__ts__"], &ts)
			newest = max(newest, ts)
		}
		for _, ns := range b.Namespaces {
			if perNS[ns] == 0 {
				t.Fatalf("%s: no series in namespace %s: %v", n.Name, ns, perNS)
			}
		}
		if perNS[""] == 0 {
			t.Fatalf("%s: node-level series missing: %v", n.Name, perNS)
		}
		if age := time.Since(time.UnixMilli(newest)); age < -time.Second || age > 30*time.Second {
			t.Fatalf("%s: newest sample is %s old", n.Name, age)
		}
	}
	// Without a valid token the apiserver refuses.
	if code, _, _ := b.ProxyGet(ctx, "node-1", "/metrics/cadvisor", "not-a-token"); code != http.StatusUnauthorized {
		t.Fatalf("bad token: got %d, want 401", code)
	}
}

// A fake kubelet authenticates bearer tokens with TokenReview and authorizes nodes/metrics
// with SubjectAccessReview, like a kubelet.
func TestBedKubeletAuth(t *testing.T) {
	b := needBed(t)
	ctx := t.Context()
	useRules(t, b, modeRules(t, "kubelet")) // nodes/metrics is kubelet mode's
	if code, body, err := b.KubeletGet(ctx, "node-2", "/metrics/cadvisor", b.RelayToken); err != nil || code != 200 {
		t.Fatalf("relay token: %d %v %.200s", code, err, body)
	}
	if code, _, err := b.KubeletGet(ctx, "node-2", "/metrics/cadvisor", ""); err != nil || code != http.StatusUnauthorized {
		t.Fatalf("no token: %d %v, want 401", code, err)
	}
	// A ServiceAccount with no RBAC: authenticated, not authorized.
	_, err := b.Client.CoreV1().ServiceAccounts("default").Create(ctx, &corev1ServiceAccount, metav1.CreateOptions{})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	tok, err := b.ServiceAccountToken(ctx, "default", corev1ServiceAccount.Name)
	if err != nil {
		t.Fatal(err)
	}
	if code, body, err := b.KubeletGet(ctx, "node-2", "/metrics/cadvisor", tok); err != nil || code != http.StatusForbidden {
		t.Fatalf("unprivileged token: %d %v %.200s, want 403", code, err, body)
	}
	if code, _, _ := b.ProxyGet(ctx, "node-2", "/metrics/cadvisor", tok); code != http.StatusForbidden {
		t.Fatalf("unprivileged token through the apiserver: %d, want 403", code)
	}
}

// Alertmanager routes by team to the recording webhooks.
func TestBedAlertmanagerRouting(t *testing.T) {
	b := needBed(t)
	ctx := t.Context()
	if err := b.PostAlert(ctx, map[string]string{"alertname": "BedSelfTest", "team": "frontend", "namespace": "frontend-service1"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Webhook.WaitAlert(ctx, "frontend", "firing", map[string]string{"alertname": "BedSelfTest"}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, a := range append(b.Webhook.Alerts("backend"), b.Webhook.Alerts("default")...) {
		if a.Labels["alertname"] == "BedSelfTest" {
			t.Fatalf("frontend alert delivered elsewhere: %v", a.Labels)
		}
	}
}

// Prometheus accepts remote write, its rule fires on a team-labelled series, and the alert
// reaches that team's webhook; a stale marker ends the series.
func TestBedPrometheusRuleToWebhook(t *testing.T) {
	b := needBed(t)
	ctx := t.Context()
	labels := map[string]string{
		"__name__": "container_memory_working_set_bytes", "namespace": "bed-selftest", "team": "backend",
		"pod": "selftest", "container": "c",
	}
	now := time.Now()
	if err := pushRemoteWrite(ctx, b.RemoteWriteURL, labels, now, 1e6); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitQuery(ctx, `container_memory_working_set_bytes{namespace="bed-selftest",team="backend"}`, 20*time.Second, bed.NonEmpty); err != nil {
		t.Fatal(err)
	}
	a, err := b.Webhook.WaitAlert(ctx, "backend", "firing", map[string]string{"alertname": bed.AlertName, "namespace": "bed-selftest"}, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if a.Labels["team"] != "backend" {
		t.Fatalf("alert labels %v", a.Labels)
	}
	// End the series with a stale marker: gone from instant queries at once.
	if err := pushRemoteWrite(ctx, b.RemoteWriteURL, labels, time.Now(), math.Float64frombits(0x7ff0000000000002)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitQuery(ctx, `container_memory_working_set_bytes{namespace="bed-selftest"}`, 10*time.Second, bed.Empty); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Webhook.WaitAlert(ctx, "backend", "resolved", map[string]string{"alertname": bed.AlertName, "namespace": "bed-selftest"}, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, a := range b.Webhook.Alerts("frontend") {
		if a.Labels["namespace"] == "bed-selftest" {
			t.Fatalf("backend alert went to frontend: %v", a.Labels)
		}
	}
}

// The relay against the bed: enriched series reach Prometheus.
func TestRelaySmoke(t *testing.T) {
	b := needBed(t)
	if relayErr != nil {
		t.Fatalf("relay binary: %v", relayErr)
	}
	ctx := t.Context()
	r, err := b.StartRelay(ctx, "--scrape-interval", "2s")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	res, err := b.WaitQuery(ctx, `count by (team, namespace) (container_memory_working_set_bytes{namespace=~"frontend-.*|backend-service"})`, 60*time.Second,
		func(s []bed.Sample) bool { return len(s) == 3 })
	if err != nil {
		t.Fatalf("%v\nrelay log:\n%s", err, r.Logs(40))
	}
	for _, s := range res {
		want := "frontend"
		if s.Metric["namespace"] == "backend-service" {
			want = "backend"
		}
		if s.Metric["team"] != want {
			t.Fatalf("namespace %s: team %q, want %q", s.Metric["namespace"], s.Metric["team"], want)
		}
	}
}

func pushRemoteWrite(ctx context.Context, url string, labels map[string]string, t time.Time, v float64) error {
	var ls []prompb.Label
	for k, v := range labels {
		ls = append(ls, prompb.Label{Name: k, Value: v})
	}
	sortLabels(ls)
	wr := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: ls, Samples: []prompb.Sample{{Value: v, Timestamp: t.UnixMilli()}}}}}
	raw, err := wr.Marshal()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("remote write: %s", resp.Status)
	}
	return nil
}

func sortLabels(ls []prompb.Label) {
	for i := 1; i < len(ls); i++ {
		for j := i; j > 0 && ls[j].Name < ls[j-1].Name; j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}
}

var corev1ServiceAccount = corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "no-rights", Namespace: "default"}}
