package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// The relay scrapes every interval; tests wait a few intervals plus the send deadline.
const (
	interval = 2 * time.Second
	settle   = 30 * time.Second
)

// startRelay starts a relay for this test: every series it writes carries e2e_test=<test>
// (an external label), so the tests' series never mix in the one Prometheus.
func startRelay(t *testing.T, args ...string) (*bed.Bed, *bed.Relay, string) {
	t.Helper()
	b := needBed(t)
	if relayErr != nil {
		t.Fatalf("relay binary: %v", relayErr)
	}
	id := regexp.MustCompile(`[^a-zA-Z0-9_]`).ReplaceAllString(t.Name(), "_")
	base := []string{
		"--scrape-interval", interval.String(), "--batch-send-deadline", "500ms",
		"--external-label", "e2e_test=" + id,
	}
	r, err := b.StartRelay(t.Context(), append(base, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			t.Logf("relay log:\n%s", r.Logs(60))
		}
	})
	return b, r, fmt.Sprintf(`e2e_test=%q`, id)
}

func teamOf(ns string) string {
	switch {
	case strings.HasPrefix(ns, "frontend-"):
		return "frontend"
	case ns == "backend-service":
		return "backend"
	}
	return ""
}

func waitQ(t *testing.T, b *bed.Bed, q string, timeout time.Duration, cond func([]bed.Sample) bool) []bed.Sample {
	t.Helper()
	res, err := b.WaitQuery(t.Context(), q, timeout, cond)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func restoreLabel(t *testing.T, b *bed.Bed, ns, value string) {
	t.Cleanup(func() {
		if err := b.SetNamespaceLabel(context.Background(), ns, "team", value); err != nil {
			t.Errorf("restore %s team=%q: %v", ns, value, err)
		}
	})
}

// 1. Every series of pods in a labelled namespace carries its team; node-level series and the
// unlabelled namespace carry none.
func TestEnrichTeams(t *testing.T) {
	b, _, sel := startRelay(t)
	q := fmt.Sprintf(`count by (node, namespace, team) ({%s, __name__=~"container_.*"})`, sel)
	res := waitQ(t, b, q, settle, func(s []bed.Sample) bool {
		nodes := map[string]bool{}
		nss := map[string]bool{}
		for _, x := range s {
			nodes[x.Metric["node"]] = true
			nss[x.Metric["namespace"]] = true
		}
		return len(nodes) == len(b.Nodes()) && len(nss) == len(b.Namespaces)+1
	})
	for _, s := range res {
		ns, team := s.Metric["namespace"], s.Metric["team"]
		if team != teamOf(ns) {
			t.Errorf("node %s namespace %q: %v series with team %q, want %q", s.Metric["node"], ns, s.V, team, teamOf(ns))
		}
	}
	// Nothing without a namespace, or in the unlabelled one, has a team.
	for _, q := range []string{
		fmt.Sprintf(`{%s, namespace="", team!=""}`, sel),
		fmt.Sprintf(`{%s, namespace="unlabelled-service", team!=""}`, sel),
	} {
		if got, err := b.Query(t.Context(), q); err != nil || len(got) != 0 {
			t.Errorf("%s: %d series, err %v", q, len(got), err)
		}
	}
}

// 2. Relabelling a namespace moves its series to the new team at the next scrape; the old
// series end at once (stale markers), not after the 5m lookback.
func TestRelabelNamespace(t *testing.T) {
	b, _, sel := startRelay(t)
	old := fmt.Sprintf(`container_memory_working_set_bytes{%s, namespace="frontend-service2", team="frontend"}`, sel)
	neu := fmt.Sprintf(`container_memory_working_set_bytes{%s, namespace="frontend-service2", team="backend"}`, sel)
	waitQ(t, b, old, settle, bed.NonEmpty)
	restoreLabel(t, b, "frontend-service2", "frontend")
	if err := b.SetNamespaceLabel(t.Context(), "frontend-service2", "team", "backend"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitQ(t, b, neu, settle, bed.NonEmpty)
	waitQ(t, b, old, 3*interval+5*time.Second, bed.Empty)
	t.Logf("relabelled in %s", time.Since(start).Round(time.Millisecond))
}

// 3. The alert fires with the team label and reaches that team's webhook only; after a
// relabel, the new team's webhook gets it.
func TestAlertRoutedByTeam(t *testing.T) {
	b, _, _ := startRelay(t)
	a, err := b.Webhook.WaitAlert(t.Context(), "frontend", "firing",
		map[string]string{"alertname": bed.AlertName, "namespace": "frontend-service1"}, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if a.Labels["team"] != "frontend" {
		t.Fatalf("alert labels %v", a.Labels)
	}
	since := time.Now()
	restoreLabel(t, b, "frontend-service1", "frontend")
	if err := b.SetNamespaceLabel(t.Context(), "frontend-service1", "team", "backend"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Webhook.WaitAlertSince(t.Context(), "backend", "firing",
		map[string]string{"alertname": bed.AlertName, "namespace": "frontend-service1", "team": "backend"}, since, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, recv := range []string{"frontend", "backend", "default"} {
		for _, a := range b.Webhook.Alerts(recv) {
			if a.Labels["alertname"] != bed.AlertName {
				continue
			}
			if want := recv; a.Labels["team"] != want && !(recv == "default" && a.Labels["team"] == "") {
				t.Errorf("receiver %s got an alert of team %q: %v", recv, a.Labels["team"], a.Labels)
			}
		}
	}
}

// 4. A new node is scraped within an interval or so of its registration; a deleted node's
// series go stale.
func TestNodeAddDelete(t *testing.T) {
	b, _, sel := startRelay(t)
	q := fmt.Sprintf(`container_memory_working_set_bytes{%s, node="node-x"}`, sel)
	waitQ(t, b, fmt.Sprintf(`container_memory_working_set_bytes{%s}`, sel), settle, bed.NonEmpty)
	start := time.Now()
	if _, err := b.AddNode(t.Context(), "node-x"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b.Node("node-x") != nil {
			_ = b.DeleteNode(context.Background(), "node-x")
		}
	})
	waitQ(t, b, q, settle, bed.NonEmpty)
	t.Logf("new node's series in Prometheus %s after it was registered", time.Since(start).Round(time.Millisecond))
	if d := time.Since(start); d > 3*interval+5*time.Second {
		t.Errorf("new node's series took %s to arrive (interval %s)", d, interval)
	}
	if err := b.DeleteNode(t.Context(), "node-x"); err != nil {
		t.Fatal(err)
	}
	waitQ(t, b, q, 2*interval+10*time.Second, bed.Empty)
}

// 5. Prometheus down for a while: the relay buffers and, once caught up, there is no gap.
func TestPrometheusOutageNoGap(t *testing.T) {
	down := 60 * time.Second
	if v := os.Getenv("E2E_PROMETHEUS_DOWN"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			down = d
		}
	}
	b, _, sel := startRelay(t)
	one := fmt.Sprintf(`container_memory_working_set_bytes{%s, node="node-1", namespace="", id="/"}`, sel)
	before := waitQ(t, b, fmt.Sprintf(`timestamp(%s)`, one), settle, bed.NonEmpty)
	stop := time.Now()
	b.StopPrometheus()
	t.Cleanup(func() { _ = b.StartPrometheus(context.Background()) })
	time.Sleep(down)
	if err := b.StartPrometheus(t.Context()); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	// Caught up: a sample scraped after Prometheus came back is in (the backlog's newest alone,
	// scraped during the outage, is not: the retry backoff may still hold what followed it).
	if before[0].V >= float64(back.Unix()) {
		t.Fatalf("the last sample before the outage is stamped %v, after Prometheus came back", before[0].V)
	}
	waitQ(t, b, fmt.Sprintf(`timestamp(%s) > %f`, one, float64(back.UnixMilli())/1000), 2*time.Minute, bed.NonEmpty)
	t.Logf("caught up %s after Prometheus came back", time.Since(back).Round(time.Millisecond))
	caught := time.Now()
	// Every 3 intervals of the outage hold a sample.
	res, err := b.QueryRange(t.Context(), fmt.Sprintf(`count_over_time(%s[%s])`, one, 3*interval),
		stop.Add(-5*time.Second), caught, interval)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 {
		t.Fatalf("want one series, got %d", len(res))
	}
	prev := stop.Add(-5 * time.Second)
	for _, p := range res[0].Points {
		if p.T.Sub(prev) > interval+time.Second {
			t.Errorf("gap: no sample in the %s before %s", 3*interval, p.T.Format(time.RFC3339))
		}
		prev = p.T
	}
	if prev.Before(back) {
		t.Errorf("the series ends at %s, before Prometheus came back at %s", prev, back)
	}
}

// 6. The relay keeps scraping through an apiserver restart and sees namespace changes made
// after it.
func TestAPIServerRestart(t *testing.T) {
	b, _, sel := startRelay(t)
	waitQ(t, b, fmt.Sprintf(`container_memory_working_set_bytes{%s}`, sel), settle, bed.NonEmpty)
	start := time.Now()
	if err := b.RestartAPIServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("apiserver restarted in %s", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	restoreLabel(t, b, "unlabelled-service", "")
	if err := b.SetNamespaceLabel(t.Context(), "unlabelled-service", "team", "qa"); err != nil {
		t.Fatal(err)
	}
	waitQ(t, b, fmt.Sprintf(`container_memory_working_set_bytes{%s, namespace="unlabelled-service", team="qa"}`, sel), 60*time.Second, bed.NonEmpty)
	t.Logf("relabel after the restart seen in %s", time.Since(start).Round(time.Millisecond))
	// Still scraping every node.
	waitQ(t, b, fmt.Sprintf(`count by (node) (time() - timestamp(container_memory_working_set_bytes{%s, id="/"}) < 10)`, sel), settle,
		func(s []bed.Sample) bool { return len(s) == len(b.Nodes()) })
}

// 7. Kubelet mode: only the given node, straight to its kubelet with the ServiceAccount token.
func TestKubeletMode(t *testing.T) {
	b := needBed(t)
	useRules(t, b, modeRules(t, "kubelet")) // the DaemonSet's role
	_, _, sel := startRelay(t, b.KubeletModeArgs("node-2")...)
	waitQ(t, b, fmt.Sprintf(`container_memory_working_set_bytes{%s, namespace="frontend-service1", team="frontend"}`, sel), settle, bed.NonEmpty)
	time.Sleep(2 * interval)
	res, err := b.Query(t.Context(), fmt.Sprintf(`count by (node) ({%s, __name__=~"container_.*"})`, sel))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Metric["node"] != "node-2" {
		t.Fatalf("want series of node-2 only, got %v", res)
	}
	logs, err := os.ReadFile(b.Node("node-2").LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logs), "user=system:serviceaccount:kubelet-meta-proxy:kubelet-meta-proxy code=200") {
		t.Fatalf("node-2's kubelet was not scraped with the relay's token:\n%s", tailStr(string(logs), 10))
	}
}

// 8. Without nodes/proxy the apiserver refuses every scrape: up=0 for every node; granting it
// back recovers.
func TestRBACWithoutNodesProxy(t *testing.T) {
	b := needBed(t)
	cr, err := b.RelayClusterRole(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	full := cr.Rules
	t.Cleanup(func() { _ = b.SetRelayRules(context.Background(), full) })
	if err := b.SetRelayRules(t.Context(), bed.WithoutResource(full, "nodes/proxy")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the RBAC authorizer's informer
	_, _, sel := startRelay(t)
	upQ := fmt.Sprintf(`up{%s}`, sel)
	waitQ(t, b, upQ, settle, func(s []bed.Sample) bool {
		if len(s) != len(b.Nodes()) {
			return false
		}
		for _, x := range s {
			if x.V != 0 {
				return false
			}
		}
		return true
	})
	if got, _ := b.Query(t.Context(), fmt.Sprintf(`container_memory_working_set_bytes{%s}`, sel)); len(got) != 0 {
		t.Fatalf("%d container series without nodes/proxy", len(got))
	}
	if err := b.SetRelayRules(t.Context(), full); err != nil {
		t.Fatal(err)
	}
	waitQ(t, b, upQ, settle, func(s []bed.Sample) bool {
		if len(s) != len(b.Nodes()) {
			return false
		}
		for _, x := range s {
			if x.V != 1 {
				return false
			}
		}
		return true
	})
	waitQ(t, b, fmt.Sprintf(`container_memory_working_set_bytes{%s, team="frontend"}`, sel), settle, bed.NonEmpty)
}

// 9. The relay's /metrics serves the same enriched series that reached
// Prometheus, label for label (the external label included).
func TestRelayMetricsMatchPrometheus(t *testing.T) {
	b, r, sel := startRelay(t)
	q := fmt.Sprintf(`container_memory_working_set_bytes{%s}`, sel)
	waitQ(t, b, fmt.Sprintf(`count by (node) (%s)`, q), settle, func(s []bed.Sample) bool { return len(s) == len(b.Nodes()) })
	time.Sleep(2 * interval)
	code, body, err := r.Get(t.Context(), "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("relay /metrics: %d %v", code, err)
	}
	fromRelay := map[string]bool{}
	for _, l := range parseText(t, body)["container_memory_working_set_bytes"] {
		delete(l, "__ts__")
		fromRelay[labelKey(l)] = true
	}
	res, err := b.Query(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	fromProm := map[string]bool{}
	for _, s := range res {
		// The external label (e2e_test) stays: /metrics shows the series
		// exactly as remote write sends them, external labels included.
		delete(s.Metric, "__name__")
		fromProm[labelKey(s.Metric)] = true
	}
	if len(fromRelay) == 0 {
		t.Fatal("no container_memory_working_set_bytes on the relay's /metrics")
	}
	for k := range fromRelay {
		if !fromProm[k] {
			t.Errorf("on /metrics, not in Prometheus: %s", k)
		}
	}
	for k := range fromProm {
		if !fromRelay[k] {
			t.Errorf("in Prometheus, not on /metrics: %s", k)
		}
	}
	teams := 0
	for k := range fromRelay {
		if strings.Contains(k, `team="`) {
			teams++
		}
	}
	if teams == 0 {
		t.Fatal("no team label on the relay's /metrics")
	}
}

func labelKey(m map[string]string) string {
	ks := make([]string, 0, len(m))
	for k, v := range m {
		if v != "" {
			ks = append(ks, fmt.Sprintf("%s=%q", k, v))
		}
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

func tailStr(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
