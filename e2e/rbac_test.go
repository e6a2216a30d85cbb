package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/testcert"
)

// useRules gives the relay's ClusterRole exactly rules for this test and puts the previous
// rules back afterwards.
func useRules(t *testing.T, b *bed.Bed, rules []rbacv1.PolicyRule) {
	t.Helper()
	cr, err := b.RelayClusterRole(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	prev := cr.Rules
	t.Cleanup(func() {
		if err := b.SetRelayRules(context.Background(), prev); err != nil {
			t.Errorf("restore the relay's rules: %v", err)
		}
		time.Sleep(2 * time.Second) // the RBAC authorizer's informer and the kubelets' auth cache
	})
	if err := b.SetRelayRules(t.Context(), rules); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
}

func modeRules(t *testing.T, mode string) []rbacv1.PolicyRule {
	t.Helper()
	rules, err := bed.ModeRules(mode)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// modeArgs are the relay flags of a mode on the bed: apiserver mode scrapes every node,
// kubelet mode (the DaemonSet's) node-2 straight, verified with the cluster CA (the bed's CA
// signs the kubelets' serving certificates, as the serving-cert CSR flow does).
func modeArgs(b *bed.Bed, mode string) (args []string, nodes int) {
	if mode == "kubelet" {
		return b.KubeletModeArgs("node-2"), 1
	}
	return nil, len(b.Nodes())
}

func allUp(n int, v float64) func([]bed.Sample) bool {
	return func(s []bed.Sample) bool {
		if len(s) != n {
			return false
		}
		for _, x := range s {
			if x.V != v {
				return false
			}
		}
		return true
	}
}

// The relay's shipped ClusterRole of each mode, bound alone to its identity on the real
// apiserver, is enough: every node it should scrape is up with team labels. And it reaches
// nothing else of the kubelets: kubelet mode's role is refused /pods through the apiserver
// proxy and at the kubelet; apiserver mode's role is refused the kubelet's /metrics directly.
func TestRBACShippedRolePerMode(t *testing.T) {
	for _, mode := range []string{"apiserver", "kubelet"} {
		t.Run(mode, func(t *testing.T) {
			b := needBed(t)
			ctx := t.Context()
			useRules(t, b, modeRules(t, mode))
			args, nodes := modeArgs(b, mode)
			_, r, sel := startRelay(t, args...)
			waitQ(t, b, fmt.Sprintf(`up{%s}`, sel), settle, allUp(nodes, 1))
			waitQ(t, b, fmt.Sprintf(`container_memory_working_set_bytes{%s, namespace="frontend-service1", team="frontend"}`, sel), settle, bed.NonEmpty)
			if code, body, err := r.Get(ctx, "/readyz"); err != nil || code != 200 {
				t.Fatalf("readyz %d %s %v", code, body, err)
			}

			proxyCode, proxyBody, err := b.ProxyGet(ctx, "node-2", "/pods", b.RelayToken)
			if err != nil {
				t.Fatal(err)
			}
			kubeletPods, kpBody, err := b.KubeletGet(ctx, "node-2", "/pods", b.RelayToken)
			if err != nil {
				t.Fatal(err)
			}
			kubeletMetrics, kmBody, err := b.KubeletGet(ctx, "node-2", "/metrics/cadvisor", b.RelayToken)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s role: apiserver proxy /pods %d, kubelet /pods %d, kubelet /metrics/cadvisor %d", mode, proxyCode, kubeletPods, kubeletMetrics)
			switch mode {
			case "kubelet":
				if proxyCode != 403 || !strings.Contains(string(proxyBody), `cannot get resource \"nodes/proxy\"`) {
					t.Errorf("kubelet role: /pods through the apiserver proxy: %d %.300s, want 403 naming nodes/proxy", proxyCode, proxyBody)
				}
				if kubeletPods != 403 || !strings.Contains(string(kpBody), " proxy]") {
					t.Errorf("kubelet role: the kubelet's /pods: %d %.300s, want 403 (nodes/proxy)", kubeletPods, kpBody)
				}
				if kubeletMetrics != 200 {
					t.Errorf("kubelet role: the kubelet's /metrics/cadvisor: %d %.200s", kubeletMetrics, kmBody)
				}
			case "apiserver":
				if kubeletMetrics != 403 || !strings.Contains(string(kmBody), "subresource(s)=[metrics]") {
					t.Errorf("apiserver role: the kubelet's /metrics/cadvisor directly: %d %.300s, want 403 (nodes/metrics)", kubeletMetrics, kmBody)
				}
			}
			if mode == "kubelet" && !strings.Contains(r.Logs(200), "verifying kubelet serving certificates") {
				t.Errorf("kubelet mode does not log how kubelet certificates are verified:\n%s", r.Logs(20))
			}
		})
	}
}

// Without any one rule of its mode's shipped role the relay fails with an error naming the
// permission: it exits if it cannot list/watch nodes or namespaces, and its scrapes fail
// (up=0) with the missing nodes/proxy or nodes/metrics named in the log.
func TestRBACMissingRuleNamed(t *testing.T) {
	// What the relay says for each resource of the shipped roles. A rule added to a role
	// without an entry here fails the test.
	type expect struct {
		exits bool
		log   string
	}
	want := map[string]expect{
		"nodes":      {true, "nodes (RBAC: list/watch nodes)"},
		"namespaces": {true, "namespaces (RBAC: list/watch namespaces)"},
		// The text log quotes the error: \" around the permission.
		"nodes/proxy":   {false, `the relay's identity needs RBAC permission \"get nodes/proxy\"`},
		"nodes/metrics": {false, `the relay's identity needs RBAC permission \"get nodes/metrics\"`},
	}
	for _, mode := range []string{"apiserver", "kubelet"} {
		full := modeRules(t, mode)
		for _, rule := range full {
			if len(rule.Resources) != 1 {
				t.Fatalf("%s role: rule %v has %d resources: one rule per resource keeps this test exact", mode, rule, len(rule.Resources))
			}
			res := rule.Resources[0]
			exp, ok := want[res]
			if !ok {
				t.Fatalf("%s role: rule on %q has no expected error here", mode, res)
			}
			t.Run(mode+"/without "+res, func(t *testing.T) {
				b := needBed(t)
				useRules(t, b, bed.WithoutResource(full, res))
				args, nodes := modeArgs(b, mode)
				_, r, sel := startRelay(t, append(args, "--cache-sync-timeout=8s")...)
				if exp.exits {
					select {
					case <-r.Exited():
					case <-time.After(45 * time.Second):
						t.Fatalf("the relay still runs 45s without %s", res)
					}
				} else {
					waitQ(t, b, fmt.Sprintf(`up{%s}`, sel), settle, allUp(nodes, 0))
				}
				deadline := time.Now().Add(20 * time.Second)
				for !strings.Contains(r.Logs(400), exp.log) {
					if time.Now().After(deadline) {
						t.Fatalf("without %s the log does not say %q:\n%s", res, exp.log, r.Logs(30))
					}
					time.Sleep(500 * time.Millisecond)
				}
				for _, line := range strings.Split(r.Logs(400), "\n") {
					if strings.Contains(line, exp.log) {
						t.Logf("without %s: %s", res, strings.TrimSpace(line))
						break
					}
				}
			})
		}
	}
}

// Words that would show an internal error to a caller.
var internalText = []string{"tokenreview", "subjectaccessreview", "is forbidden", "system:serviceaccount:kubelet-meta-proxy", "cannot create", "dial tcp", "x509", "review"}

// Secure serving with the shipped secure-metrics component's role: without it the relay is
// not ready and says which permission it lacks, and callers get a generic 401 (never a 500
// with the apiserver's text); with it, no token and a garbage token are 401, a
// ServiceAccount without RBAC 403, one bound to the shipped metrics-reader role 200. The
// serving certificate rotated on disk is the one of the next handshake.
func TestSecureServingShippedComponent(t *testing.T) {
	b := needBed(t)
	ctx := t.Context()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	testcert.WritePair(t, certFile, keyFile, 1001)

	reader, err := bed.ShippedClusterRole(bed.MetricsReaderRoleFile)
	if err != nil {
		t.Fatal(err)
	}
	readerToken, err := b.CreateServiceAccount(ctx, "default", "kmp-metrics-reader")
	if err != nil {
		t.Fatal(err)
	}
	undo, err := b.BindClusterRole(ctx, reader, "default", "kmp-metrics-reader")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(undo)
	noRBACToken, err := b.CreateServiceAccount(ctx, "default", "kmp-no-rbac")
	if err != nil {
		t.Fatal(err)
	}

	_, r, _ := startRelay(t, "--metrics-secure", "--tls-cert-file", certFile, "--tls-private-key-file", keyFile)
	check := func(what, path, token string, wantCode int, wantBody string) {
		t.Helper()
		code, body, err := r.GetWithToken(ctx, path, token)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if code != wantCode || !strings.Contains(string(body), wantBody) {
			t.Fatalf("%s: %d %.300q, want %d with %q", what, code, body, wantCode, wantBody)
		}
		if code != 200 {
			for _, w := range internalText {
				if strings.Contains(strings.ToLower(string(body)), w) {
					t.Errorf("%s: answer %q shows internal detail %q", what, body, w)
				}
			}
		}
		t.Logf("%s: %d %.80q", what, code, body)
	}
	waitReadyz := func(code int, contains string) {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for {
			c, body, err := r.Get(ctx, "/readyz")
			if err == nil && c == code && strings.Contains(string(body), contains) {
				t.Logf("readyz %d %s", c, strings.TrimSpace(string(body)))
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("readyz %d %q (%v), want %d with %q\n%s", c, body, err, code, contains, r.Logs(20))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	// 1. The relay's role of its mode only, as before the component: not ready, and why.
	waitReadyz(503, "may not create tokenreviews.authentication.k8s.io")
	check("reader without the component", "/metrics", readerToken, 401, "Unauthorized")
	check("no token without the component", "/metrics", "", 401, "Unauthorized")
	if l := r.Logs(200); !strings.Contains(l, `cannot create resource \"tokenreviews\"`) && !strings.Contains(l, `cannot create resource "tokenreviews"`) {
		t.Errorf("the relay's log lacks the apiserver's refusal of the TokenReview:\n%s", r.Logs(20))
	}

	// 2. The shipped component's role, bound to the relay as its clusterrolebinding.yaml does.
	secure, err := bed.ShippedClusterRole(bed.SecureMetricsRoleFile)
	if err != nil {
		t.Fatal(err)
	}
	undoSecure, err := b.BindClusterRole(ctx, secure, bed.RelayNamespace, bed.RelayServiceAccount)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(undoSecure)
	waitReadyz(200, "ok")
	check("no token", "/metrics", "", 401, "Unauthorized")
	check("garbage token", "/metrics", "garbage.not-a-token", 401, "Unauthorized")
	check("ServiceAccount without RBAC", "/metrics", noRBACToken, 403, "Forbidden")
	check("granted reader", "/metrics", readerToken, 200, `team="frontend"`)
	check("granted reader, self metrics", "/metrics/self", readerToken, 200, "kubelet_meta_proxy_server_auth_decisions_total")
	check("health without a token", "/healthz", "", 200, "ok")

	// 3. 300 garbage tokens: at most the burst plus the rate of TokenReviews, the rest 429,
	// none a 500 (issue 13 measured 300 reviews for 300 tokens).
	reviews := func() float64 {
		t.Helper()
		code, body, err := r.GetWithToken(ctx, "/metrics/self", readerToken)
		if err != nil || code != 200 {
			t.Fatalf("/metrics/self: %d %v", code, err)
		}
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, `kubelet_meta_proxy_server_auth_reviews_total{review="tokenreview"} `); ok {
				var f float64
				fmt.Sscan(v, &f)
				return f
			}
		}
		t.Fatal("no tokenreview counter in /metrics/self")
		return 0
	}
	before := reviews()
	start := time.Now()
	codes := map[int]int{}
	for i := 0; i < 300; i++ {
		code, _, err := r.GetWithToken(ctx, "/metrics", fmt.Sprintf("garbage-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		codes[code]++
	}
	made := reviews() - before
	limit := 40 + 20*time.Since(start).Seconds() + 1
	t.Logf("300 garbage tokens in %s: answers %v, %.0f TokenReviews (limit %.0f)", time.Since(start).Round(time.Millisecond), codes, made, limit)
	if codes[401]+codes[429] != 300 || made > limit {
		t.Fatalf("300 garbage tokens: answers %v, %.0f TokenReviews, want only 401/429 and at most %.0f", codes, made, limit)
	}

	// 4. The serving certificate rotated on disk: the next handshake has the new one.
	addr := strings.TrimPrefix(r.BaseURL, "https://")
	if s := testcert.ServedSerial(t, addr); s != 1001 {
		t.Fatalf("serving serial %d, want 1001", s)
	}
	testcert.WritePair(t, certFile, keyFile, 1002)
	if s := testcert.ServedSerial(t, addr); s != 1002 {
		t.Fatalf("after rotation on disk: serving serial %d, want 1002", s)
	}
	check("granted reader after rotation", "/metrics", readerToken, 200, `team="frontend"`)
	if !strings.Contains(r.Logs(200), "serving certificate reloaded") {
		t.Errorf("the reload is not logged:\n%s", r.Logs(20))
	}
}

// Kubelet mode's CA options: the cluster CA works (TestRBACShippedRolePerMode), another CA is
// refused with the x509 error in the log and up=0, --kubelet-insecure-skip-verify works and
// is logged as a warning at start-up, and giving both is refused.
func TestKubeletTLSOptions(t *testing.T) {
	b := needBed(t)
	useRules(t, b, modeRules(t, "kubelet"))
	base := []string{"--mode=kubelet", "--node-name-or-ip=node-2", "--kubelet-token-file=" + b.RelayTokenFile}

	t.Run("another CA", func(t *testing.T) {
		dir := t.TempDir()
		otherCA := filepath.Join(dir, "other-ca.crt")
		testcert.WritePair(t, otherCA, filepath.Join(dir, "other-ca.key"), 7)
		_, r, sel := startRelay(t, append(base, "--kubelet-ca-file="+otherCA)...)
		waitQ(t, b, fmt.Sprintf(`up{%s}`, sel), settle, allUp(1, 0))
		if l := r.Logs(200); !strings.Contains(l, "x509") {
			t.Fatalf("no x509 error in the log:\n%s", r.Logs(20))
		}
	})
	t.Run("insecure skip verify", func(t *testing.T) {
		_, r, sel := startRelay(t, append(base, "--kubelet-insecure-skip-verify")...)
		waitQ(t, b, fmt.Sprintf(`up{%s}`, sel), settle, allUp(1, 1))
		var warn string
		for _, line := range strings.Split(r.Logs(400), "\n") {
			if strings.Contains(line, "kubelet serving certificates are NOT verified") {
				warn = line
			}
		}
		if !strings.Contains(warn, "WARN") {
			t.Fatalf("no start-up warning for --kubelet-insecure-skip-verify:\n%s", r.Logs(20))
		}
		t.Logf("%s", warn)
	})
	t.Run("both refused", func(t *testing.T) {
		r, err := b.StartRelay(t.Context(), append(base, "--kubelet-insecure-skip-verify", "--kubelet-ca-file="+b.CAFile)...)
		if err == nil {
			r.Stop()
			t.Fatal("the relay started with --kubelet-insecure-skip-verify and --kubelet-ca-file")
		}
		if !strings.Contains(err.Error(), "--kubelet-insecure-skip-verify and --kubelet-ca-file") {
			t.Fatalf("error does not say why: %v", err)
		}
	})
}
