package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// Tenant routing against the real multi-tenant receiver (issue 16): the relay writes to
// Cortex with --tenant-label=team; each team's series land in its own tenant.

// tenantSetup relabels frontend-service2 to a third team for the test (restored after), so
// that the bed has three teams' namespaces and an unlabelled one, and returns the tenant
// names: team values suffixed with a per-run tag (Cortex keeps data across tests and runs).
type tenantNames struct {
	frontend, backend, data, def string
}

func setupTenants(t *testing.T, b *bed.Bed) tenantNames {
	t.Helper()
	tag := strconv.FormatUint(rand.Uint64()%1e6, 10)
	n := tenantNames{frontend: "frontend-" + tag, backend: "backend-" + tag, data: "data-" + tag, def: "unlabelled-" + tag}
	for ns, team := range map[string]string{
		"frontend-service1": n.frontend, "frontend-service2": n.data, "backend-service": n.backend,
	} {
		old := teamOf(ns)
		restoreLabel(t, b, ns, old)
		if err := b.SetNamespaceLabel(t.Context(), ns, "team", team); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// tenantCounts returns, per namespace, how many container_memory_working_set_bytes series
// tenant holds, and fails on any whose team is not the tenant (want, "" for none).
func tenantNamespaces(t *testing.T, c *bed.Cortex, tenant, sel, wantTeam string) map[string]int {
	t.Helper()
	res, err := c.Query(t.Context(), tenant, fmt.Sprintf(`count by (namespace, team) (container_memory_working_set_bytes{%s})`, sel))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, s := range res {
		if s.Metric["team"] != wantTeam {
			t.Errorf("tenant %s holds series of team %q (namespace %q), want only team %q", tenant, s.Metric["team"], s.Metric["namespace"], wantTeam)
		}
		out[s.Metric["namespace"]] += int(s.V)
	}
	return out
}

func TestTenantRoutingCortex(t *testing.T) {
	b, c := needCortex(t)
	n := setupTenants(t, b)
	_, r, sel := startRelay(t, "--remote-write-url", c.PushURL, "--tenant-label", "team", "--default-tenant", n.def)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	want := map[string][]string{ // tenant -> its namespaces
		n.frontend: {"frontend-service1"},
		n.data:     {"frontend-service2"},
		n.backend:  {"backend-service"},
		n.def:      {"", "unlabelled-service"}, // node-level series have no namespace
	}
	teams := map[string]string{n.frontend: n.frontend, n.data: n.data, n.backend: n.backend, n.def: ""}
	t.Run("isolation", func(t *testing.T) {
		q := fmt.Sprintf(`count by (namespace, team) (container_memory_working_set_bytes{%s})`, sel)
		for tenant, nss := range want {
			if _, err := c.WaitQuery(ctx, tenant, q, settle, func(s []bed.Sample) bool { return len(s) >= len(nss) }); err != nil {
				t.Fatalf("tenant %s: %v\nrelay:\n%s", tenant, err, r.Logs(30))
			}
		}
		for tenant, nss := range want {
			got := tenantNamespaces(t, c, tenant, sel, teams[tenant])
			for _, ns := range nss {
				if got[ns] == 0 {
					t.Errorf("tenant %s has no series of namespace %q: %v", tenant, ns, got)
				}
				delete(got, ns)
			}
			if len(got) != 0 {
				t.Errorf("tenant %s holds other namespaces' series: %v", tenant, got)
			}
		}
		// Nothing reached a tenant that no team names.
		if res, err := c.Query(ctx, "nobody-"+n.def, fmt.Sprintf(`{%s}`, sel)); err != nil || len(res) != 0 {
			t.Errorf("a tenant nobody writes to: %d series, %v", len(res), err)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("relabel", func(t *testing.T) {
		// frontend-service2 moves from data to backend: its series move tenant at the next
		// scrape, and end in the old tenant at once (stale markers sent to the old tenant).
		q := fmt.Sprintf(`container_memory_working_set_bytes{%s, namespace="frontend-service2"}`, sel)
		if err := b.SetNamespaceLabel(ctx, "frontend-service2", "team", n.backend); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := c.WaitQuery(ctx, n.backend, q, settle, bed.NonEmpty); err != nil {
			t.Fatalf("the moved series in the new tenant: %v", err)
		}
		if res, err := c.WaitQuery(ctx, n.data, q, 3*interval+5*time.Second, bed.Empty); err != nil {
			t.Fatalf("the old tenant still has the moved series %s after the relabel (no stale marker?): %v", time.Since(start), res)
		}
		t.Logf("moved from tenant %s to %s and ended in the old one in %s", n.data, n.backend, time.Since(start).Round(time.Millisecond))
		for _, s := range mustQuery(t, c, n.backend, q) {
			if s.Metric["team"] != n.backend {
				t.Errorf("moved series in %s with team %q", n.backend, s.Metric["team"])
			}
		}
	})

	t.Run("limit", func(t *testing.T) {
		// The data tenant has no series left; limit backend (now two namespaces) instead and
		// check that frontend and the default tenant keep flowing at full speed meanwhile.
		limited := n.backend
		if err := c.SetTenantLimits(ctx, limited, map[string]any{"ingestion_rate": 1, "ingestion_burst_size": 1}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.SetTenantLimits(context.Background(), limited, nil) })
		// Wait for the first 429s.
		waitRelayMetric(t, r, "kubelet_meta_proxy_remote_write_tenant_samples_retried_total", map[string]string{"tenant": limited},
			30*time.Second, func(v float64) bool { return v > 0 })
		before := relayMetrics(t, r)
		const window = 5 * interval
		time.Sleep(window)
		after := relayMetrics(t, r)
		sent := func(m map[string]float64, tenant string) float64 {
			return m[`kubelet_meta_proxy_remote_write_tenant_samples_sent_total{tenant="`+tenant+`"}`]
		}
		perScrape := func(tenant string) float64 {
			res := mustQuery(t, c, tenant, fmt.Sprintf(`count({%s})`, sel))
			if len(res) == 0 {
				return 0
			}
			return res[0].V
		}
		for _, tenant := range []string{n.frontend, n.def} {
			got, per := sent(after, tenant)-sent(before, tenant), perScrape(tenant)
			// window/interval scrapes; allow one scrape plus one send deadline of slack.
			if min := per * (float64(window/interval) - 2); got < min || per == 0 {
				t.Errorf("tenant %s sent %v samples in %s while %s was limited, want at least %v (%v a scrape)", tenant, got, window, limited, min, per)
			}
		}
		if d := sent(after, limited) - sent(before, limited); d != 0 {
			t.Errorf("limited tenant %s had %v samples accepted", limited, d)
		}
		if v := after[`kubelet_meta_proxy_remote_write_tenant_backoff{tenant="`+limited+`"}`]; v != 1 {
			t.Logf("tenant_backoff{%s} = %v at the sample time (between retries it is 0)", limited, v)
		}
		for k, v := range after {
			if strings.HasPrefix(k, "kubelet_meta_proxy_remote_write_samples_dropped_total") && v != 0 {
				t.Errorf("%s = %v: nothing may be lost while a tenant is backed off", k, v)
			}
		}
		// Lifted: the held samples go in, in order (no out-of-order rejections).
		if err := c.SetTenantLimits(ctx, limited, nil); err != nil {
			t.Fatal(err)
		}
		waitRelayMetric(t, r, "kubelet_meta_proxy_remote_write_tenant_queue_length", map[string]string{"tenant": limited},
			60*time.Second, func(v float64) bool { return v < 1000 })
		final := relayMetrics(t, r)
		if d := sent(final, limited) - sent(after, limited); d == 0 {
			t.Errorf("tenant %s sent nothing after its limit was lifted", limited)
		}
	})
}

// Two relays with cluster/__replica__ external labels: Cortex's HA tracker keeps one replica
// per tenant; the other is answered 202 (counted as deduplicated, not as lost).
func TestTenantHACortex(t *testing.T) {
	b, c := needCortex(t)
	n := setupTenants(t, b)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	tenants := []string{n.frontend, n.data, n.backend, n.def}
	for _, tn := range tenants {
		if err := c.SetTenantLimits(ctx, tn, map[string]any{"accept_ha_samples": true}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.SetTenantLimits(context.Background(), tn, nil) })
	}
	cluster := "ha-" + n.def
	args := func(replica string) []string {
		return []string{"--remote-write-url", c.PushURL, "--tenant-label", "team", "--default-tenant", n.def,
			"--external-label", "cluster=" + cluster, "--external-label", "__replica__=" + replica}
	}
	_, r1, sel := startRelay(t, args("r1")...)
	_, r2, _ := startRelay(t, args("r2")...)
	q := fmt.Sprintf(`count by (namespace, cluster, __replica__) (container_memory_working_set_bytes{%s})`, sel)
	for _, tn := range tenants {
		res, err := c.WaitQuery(ctx, tn, q, settle, bed.NonEmpty)
		if err != nil {
			t.Fatalf("tenant %s: %v", tn, err)
		}
		for _, s := range res {
			if s.Metric["cluster"] != cluster || s.Metric["__replica__"] != "" {
				t.Errorf("tenant %s: series %v: want cluster %s and no __replica__ (deduplicated)", tn, s.Metric, cluster)
			}
		}
	}
	// Both relays sent every tenant's series; per tenant one was accepted and the other answered
	// as a duplicate, and neither counts anything as lost.
	dedup := func(m map[string]float64, tn string) float64 {
		return m[`kubelet_meta_proxy_remote_write_tenant_samples_deduplicated_total{tenant="`+tn+`"}`]
	}
	for _, tn := range tenants {
		waitCond(t, 30*time.Second, "a replica answered as duplicate for tenant "+tn, func() bool {
			return dedup(relayMetrics(t, r1), tn)+dedup(relayMetrics(t, r2), tn) > 0
		})
	}
	m1, m2 := relayMetrics(t, r1), relayMetrics(t, r2)
	for _, tn := range tenants {
		d1, d2 := dedup(m1, tn), dedup(m2, tn)
		t.Logf("tenant %s: deduplicated r1 %v, r2 %v", tn, d1, d2)
		if d1 > 0 && d2 > 0 {
			// A failover can flip the election once; say so, it is not a failure.
			t.Logf("tenant %s: both replicas saw 202s (an election changed)", tn)
		}
	}
	for _, m := range []map[string]float64{m1, m2} {
		for k, v := range m {
			if (strings.HasPrefix(k, "kubelet_meta_proxy_remote_write_samples_dropped_total") ||
				strings.HasPrefix(k, "kubelet_meta_proxy_remote_write_samples_failed_total")) && v != 0 {
				t.Errorf("%s = %v: a duplicate is no loss", k, v)
			}
		}
	}
	// Cortex holds each series once: had it stored both replicas, their series would differ
	// only in __replica__.
	for _, tn := range tenants {
		res := mustQuery(t, c, tn, fmt.Sprintf(`count without (__replica__) (container_memory_working_set_bytes{%s}) > 1`, sel))
		if len(res) != 0 {
			t.Errorf("tenant %s holds %d series twice: %v", tn, len(res), res[0].Metric)
		}
	}
}

func mustQuery(t *testing.T, c *bed.Cortex, tenant, q string) []bed.Sample {
	t.Helper()
	res, err := c.Query(t.Context(), tenant, q)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// relayMetrics reads /metrics/self as name{tenant="..."} -> value, summing over the other
// labels (remote_name, url, reason); keys without a tenant are the plain name{}.
func relayMetrics(t *testing.T, r *bed.Relay) map[string]float64 {
	t.Helper()
	code, body, err := r.Get(t.Context(), "/metrics/self")
	if err != nil || code != 200 {
		t.Fatalf("/metrics/self: %d %v", code, err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics/self: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			key := name
			for _, p := range m.Label {
				if p.GetName() == "tenant" {
					key += `{tenant="` + p.GetValue() + `"}`
				}
			}
			switch {
			case m.Counter != nil:
				out[key] += m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] += m.Gauge.GetValue()
			}
		}
	}
	return out
}

func waitRelayMetric(t *testing.T, r *bed.Relay, name string, labels map[string]string, timeout time.Duration, cond func(float64) bool) {
	t.Helper()
	key := name
	if tn, ok := labels["tenant"]; ok {
		key += `{tenant="` + tn + `"}`
	}
	waitCond(t, timeout, key, func() bool { return cond(relayMetrics(t, r)[key]) })
}

func waitCond(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
