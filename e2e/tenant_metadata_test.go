package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// Metric metadata with tenant routing (issue 16: "metadata goes to every tenant whose series use
// that family"): a relay with --config.file (Prometheus's remote_write with metadata_config, the
// relay's only way to send metadata) and --tenant-label writes to Cortex; each tenant's metadata
// API (GET /prometheus/api/v1/metadata with its X-Scope-OrgID, from the ingesters' memory)
// lists exactly the families of that tenant's series, with the type and help the kubelet gave.
func TestTenantMetadataCortex(t *testing.T) {
	b, c := needCortex(t)
	n := setupTenants(t, b)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	id := regexp.MustCompile(`[^a-zA-Z0-9_]`).ReplaceAllString(t.Name(), "_")
	file := filepath.Join(t.TempDir(), "relay.yml")
	cfg := fmt.Sprintf(`remote_write:
  - url: %s
    queue_config:
      batch_send_deadline: 500ms
    metadata_config:
      send: true
      send_interval: 2s
`, c.PushURL)
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := b.StartRelay(ctx, "--scrape-interval", interval.String(), "--external-label", "e2e_test="+id,
		"--config.file", file, "--tenant-label", "team", "--default-tenant", n.def)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			t.Logf("relay log:\n%s", r.Logs(60))
		}
	})
	sel := fmt.Sprintf(`e2e_test=%q`, id)
	tenants := []string{n.frontend, n.data, n.backend, n.def}
	for _, tn := range tenants {
		if _, err := c.WaitQuery(ctx, tn, fmt.Sprintf(`count({%s})`, sel), settle, bed.NonEmpty); err != nil {
			t.Fatalf("tenant %s: no series: %v", tn, err)
		}
	}

	// The families the kubelets expose, as the relay's /metrics view gives them (TYPE lines).
	code, body, err := r.Get(ctx, "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	// The relay's view: every series with its enriched labels, so each series' tenant (its
	// team, else the default) is known from what the relay routed, not from what a query sees.
	types := map[string]string{}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			types[f[2]] = f[3]
		} else if line != "" && line[0] != '#' {
			lines = append(lines, line)
		}
	}
	// familyOf maps a series name to its family: itself, or a histogram's or summary's.
	familyOf := func(name string) string {
		if _, ok := types[name]; ok {
			return name
		}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suf); ok && (types[base] == "histogram" || types[base] == "summary") {
				return base
			}
		}
		return ""
	}
	teamRE := regexp.MustCompile(`[{,]team="([^"]*)"`)
	fams := map[string]map[string]bool{}
	for _, tn := range tenants {
		fams[tn] = map[string]bool{}
	}
	for _, line := range lines {
		name := line[:strings.IndexAny(line, "{ ")]
		tn := n.def
		if m := teamRE.FindStringSubmatch(line); m != nil {
			tn = m[1]
		}
		if fams[tn] == nil {
			t.Fatalf("series of team %q on /metrics, not one of this test's tenants: %s", tn, line)
		}
		if f := familyOf(name); f != "" {
			fams[tn][f] = true
		}
	}
	// Series the relay adds per target (up, scrape_*: no team label, so the default tenant's)
	// are not on /metrics; their metadata comes from the relay itself.
	for _, s := range mustQuery(t, c, n.def, fmt.Sprintf(`group by (__name__) ({%s})`, sel)) {
		if name := s.Metric["__name__"]; familyOf(name) == "" {
			fams[n.def][name] = true
		}
	}
	want := map[string][]string{}
	for tn, fs := range fams {
		want[tn] = slices.Sorted(maps.Keys(fs))
	}
	// The test can tell: some tenant lacks a family another has (node-level families are the
	// default tenant's only).
	union := map[string]bool{}
	for _, fs := range want {
		for _, f := range fs {
			union[f] = true
		}
	}
	differ := false
	for _, fs := range want {
		differ = differ || len(fs) < len(union)
	}
	if !differ {
		t.Fatalf("every tenant has the same %d families: this test could not tell tenants' metadata apart", len(union))
	}

	// Metadata goes out every 2s: allow a few intervals for every family to have been sent.
	got := map[string]map[string][]bed.MetricMetadata{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		same := true
		for _, tn := range tenants {
			md, err := c.Metadata(ctx, tn)
			if err != nil {
				t.Fatal(err)
			}
			got[tn] = md
			same = same && slices.Equal(slices.Sorted(maps.Keys(md)), want[tn])
		}
		if same || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	for _, tn := range tenants {
		names := slices.Sorted(maps.Keys(got[tn]))
		if !slices.Equal(names, want[tn]) {
			var missing, extra []string
			for _, f := range want[tn] {
				if _, ok := got[tn][f]; !ok {
					missing = append(missing, f)
				}
			}
			for _, f := range names {
				if !slices.Contains(want[tn], f) {
					extra = append(extra, f)
				}
			}
			t.Errorf("tenant %s: metadata of %d families, want its %d: missing %v, extra %v", tn, len(names), len(want[tn]), missing, extra)
			continue
		}
		for f, ms := range got[tn] {
			typ, kubelet := types[f]
			if typ == "untyped" {
				typ = "unknown" // remote write's name for it
			}
			if !kubelet { // the relay's own series (up, scrape_*)
				typ = ms[0].Type
			}
			if len(ms) != 1 || ms[0].Type != typ || ms[0].Help == "" {
				t.Errorf("tenant %s: family %s: metadata %+v, want one entry of type %s with help", tn, f, ms, typ)
			}
		}
		t.Logf("tenant %s: metadata of its %d families", tn, len(names))
	}
	// A tenant nobody writes to has none.
	if md, err := c.Metadata(ctx, "nobody-"+n.def); err != nil || len(md) != 0 {
		t.Errorf("a tenant nobody writes to: %d families of metadata, %v", len(md), err)
	}
	m := relayMetrics(t, r)
	if m["kubelet_meta_proxy_remote_write_metadata_sent_total"] == 0 || m["kubelet_meta_proxy_remote_write_metadata_failed_total"] != 0 {
		t.Errorf("metadata sent %v, failed %v", m["kubelet_meta_proxy_remote_write_metadata_sent_total"], m["kubelet_meta_proxy_remote_write_metadata_failed_total"])
	}
}
