package relay

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

	"strconv"

	"github.com/prometheus/common/expfmt"
	commonmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/value"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const fixtureDir = "../../internal/captures"

// captures are the real kubelet payloads (see internal/captures/SOURCES.md).
var captures = []string{
	"newrelic-nri-kubernetes__1_35-kubelet-metrics-cadvisor.txt",
	"newrelic-nri-kubernetes__1_28-kubelet-metrics-cadvisor.txt",
	"newrelic-nri-kubernetes__1_16-kubelet-metrics-cadvisor.txt",
	"newrelic-nri-kubernetes__k8s_v1_15_kubelet_metrics_cadvisor_payload_plain.txt",
	"datadog-integrations-core__cadvisor_metrics.txt",
	"datadog-integrations-core__kubelet_metrics.txt",
}

func readCapture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func testTarget() *scrape.Target {
	return &scrape.Target{Key: "node/node-a", Node: "node-a", Address: "198.18.0.10:10250", Path: "/metrics/cadvisor",
		Labels: []enrich.Label{
			{Name: "instance", Value: "198.18.0.10:10250"},
			{Name: "job", Value: "kubelet"},
			{Name: "metrics_path", Value: "/metrics/cadvisor"},
			{Name: "node", Value: "node-a"},
		}}
}

// testIndex maps the captures' namespaces the way nsindex would, through the
// real NamespaceMapper, so sanitizing and clashes are exercised too.
func testIndex(gen uint64, team map[string]string) *enrich.NamespaceIndex {
	mapper := enrich.NamespaceMapper{Labels: enrich.KeyMapper{Allow: map[string]struct{}{"team": {}, "app.kubernetes.io/part-of": {}, "pod": {}}}}
	m := map[string]enrich.NamespaceInfo{}
	for ns, t := range team {
		kv := map[string]string{"team": t, "kubernetes.io/metadata.name": ns}
		if ns == "kube-system" {
			kv["app.kubernetes.io/part-of"] = "platform"
			kv["pod"] = "clash" // the series' own pod label must win
		}
		ls, _ := mapper.Map(kv, nil)
		m[ns] = enrich.NamespaceInfo{Labels: ls, Version: gen}
	}
	return enrich.NewNamespaceIndex(gen, m)
}

var baseTeams = map[string]string{"kube-system": "platform", "scraper": "observability", "default": "frontend"}

var scrapeTime = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func TestGoldenEnrichedView(t *testing.T) {
	for _, name := range captures {
		t.Run(name, func(t *testing.T) {
			c := NewTargetCache(testTarget(), true)
			res := c.Process(readCapture(t, name), "text/plain; version=0.0.4", scrapeTime, 250*time.Millisecond, testIndex(1, baseTeams), nil)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			var out bytes.Buffer
			if err := view.WriteText(&out, []*view.TargetView{res.View}, nil); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "golden", strings.TrimSuffix(name, ".txt")+".prom")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("enriched view differs from %s (run go test ./internal/relay -update after checking the change)", golden)
			}
			checkView(t, name, out.Bytes(), res)
		})
	}
}

// checkView re-parses the view with expfmt, the reference parser, and checks
// the enrichment rules on every sample.
func checkView(t *testing.T, name string, view []byte, res *Result) {
	t.Helper()
	fams, err := textParser().TextToMetricFamilies(bytes.NewReader(view))
	if err != nil {
		t.Fatalf("view does not parse: %v", err)
	}
	raw, err := textParser().TextToMetricFamilies(bytes.NewReader(readCapture(t, name)))
	if err != nil {
		t.Fatal(err)
	}
	for fname, f := range raw {
		got := fams[fname]
		if got == nil || len(got.Metric) != len(f.Metric) {
			t.Fatalf("family %s: %d samples in the capture, view has %v", fname, len(f.Metric), got)
		}
	}
	samples := 0
	for _, l := range strings.Split(string(readCapture(t, name)), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			samples++
		}
	}
	if res.Scraped != samples {
		t.Errorf("Scraped = %d, capture has %d samples", res.Scraped, samples)
	}
	enriched := 0
	for fname, f := range fams {
		for _, m := range f.Metric {
			ls := map[string]string{}
			for _, lp := range m.Label {
				ls[lp.GetName()] = lp.GetValue()
			}
			if ls["node"] != "node-a" || ls["job"] != "kubelet" || ls["instance"] != "198.18.0.10:10250" {
				t.Fatalf("%s%v lacks the target labels", fname, ls)
			}
			wantTeam, labelled := baseTeams[ls["namespace"]]
			if ls["team"] != wantTeam || (!labelled && ls["team"] != "") {
				t.Fatalf("%s%v: team %q, want %q", fname, ls, ls["team"], wantTeam)
			}
			if labelled {
				enriched++
			}
			if ls["namespace"] == "kube-system" {
				if ls["app_kubernetes_io_part_of"] != "platform" {
					t.Fatalf("%s%v: sanitized label missing", fname, ls)
				}
				// The series' own pod label wins; the namespace's comes as
				// exported_pod. Old captures say pod_name, so theirs is free.
				if ls["exported_pod"] != "clash" && (ls["pod"] != "clash" || ls["pod_name"] == "") {
					t.Fatalf("%s%v: the namespace's pod label must come as exported_pod", fname, ls)
				}
			}
		}
	}
	if enriched != res.Enriched {
		t.Errorf("Enriched = %d, view shows %d enriched samples", res.Enriched, enriched)
	}
}

func sentByName(send []model.Sample) map[string][]model.Sample {
	m := map[string][]model.Sample{}
	for _, s := range send {
		k := string(enrich.AppendSeriesText(nil, s.Table, s.Ref))
		m[k] = append(m[k], s)
	}
	return m
}

func TestTimestampsNeverRepeat(t *testing.T) {
	body := readCapture(t, captures[0])
	c := NewTargetCache(testTarget(), true)
	ix := testIndex(1, baseTeams)
	first := c.Process(body, "", scrapeTime, time.Second, ix, nil)
	firstSent := len(first.Send)
	second := c.Process(body, "", scrapeTime.Add(30*time.Second), time.Second, ix, nil)
	// The capture repeats its own timestamps: those lines must not be sent
	// again; lines without one get the new scrape time.
	withTS := bytes.Count(body, []byte("} ")) // crude upper bound, checked below
	if second.Skipped == 0 || second.Skipped > withTS {
		t.Fatalf("Skipped = %d", second.Skipped)
	}
	if got, want := len(second.Send), firstSent-second.Skipped; got != want {
		t.Fatalf("second scrape sent %d samples, want %d (first %d, skipped %d)", got, want, firstSent, second.Skipped)
	}
	for _, s := range second.Send {
		if s.T != scrapeTime.Add(30*time.Second).UnixMilli() {
			t.Fatalf("resent a target timestamp %d", s.T)
		}
	}
	// Without honor_timestamps everything is new each time.
	c2 := NewTargetCache(testTarget(), false)
	c2.Process(body, "", scrapeTime, time.Second, ix, nil)
	r := c2.Process(body, "", scrapeTime.Add(time.Second), time.Second, ix, nil)
	if r.Skipped != 0 || len(r.Send) != firstSent {
		t.Fatalf("honor_timestamps=false: skipped %d, sent %d, want 0 and %d", r.Skipped, len(r.Send), firstSent)
	}
}

func TestRelabelledNamespaceGoesStaleAtOnce(t *testing.T) {
	body := readCapture(t, captures[1])
	c := NewTargetCache(testTarget(), false)
	c.Process(body, "", scrapeTime, time.Second, testIndex(1, baseTeams), nil)

	teams := map[string]string{"kube-system": "platform", "scraper": "backend", "default": "frontend"}
	ix2 := testIndex(2, teams)
	// Only scraper's version moves; the others keep theirs.
	m := map[string]enrich.NamespaceInfo{}
	for _, ns := range []string{"kube-system", "scraper", "default"} {
		info, _ := ix2.Lookup(ns)
		if ns != "scraper" {
			info.Version = 1
		}
		m[ns] = info
	}
	now := scrapeTime.Add(30 * time.Second)
	res := c.Process(body, "", now, time.Second, enrich.NewNamespaceIndex(2, m), nil)
	stale, fresh := 0, 0
	for k, ss := range sentByName(res.Send) {
		for _, s := range ss {
			switch {
			case value.IsStaleNaN(s.V):
				if !strings.Contains(k, `team="observability"`) {
					t.Fatalf("stale marker for a series that did not change: %s", k)
				}
				if s.T != now.UnixMilli() {
					t.Fatalf("stale marker at %d, want the scrape time %d", s.T, now.UnixMilli())
				}
				stale++
			case strings.Contains(k, `namespace="scraper"`):
				if !strings.Contains(k, `team="backend"`) {
					t.Fatalf("scraper series without its new team: %s", k)
				}
				fresh++
			case strings.Contains(k, `team="observability"`):
				t.Fatalf("old team still sent: %s", k)
			}
		}
	}
	if stale == 0 || stale != fresh {
		t.Fatalf("%d stale markers for %d relabelled series", stale, fresh)
	}
}

func TestVanishedSeriesAndFailedScrapesGoStale(t *testing.T) {
	body := readCapture(t, captures[1])
	ix := testIndex(1, baseTeams)
	c := NewTargetCache(testTarget(), false)
	first := c.Process(body, "", scrapeTime, time.Second, ix, nil)

	// Drop every line of one family: exactly its series go stale.
	var kept []string
	dropped := 0
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "container_memory_rss{") {
			dropped++
			continue
		}
		kept = append(kept, l)
	}
	res := c.Process([]byte(strings.Join(kept, "\n")), "", scrapeTime.Add(time.Minute), time.Second, ix, nil)
	if res.Stale != dropped {
		t.Fatalf("%d stale markers, want %d", res.Stale, dropped)
	}
	for _, s := range res.Send {
		if value.IsStaleNaN(s.V) && !strings.HasPrefix(string(enrich.AppendSeriesText(nil, s.Table, s.Ref)), "container_memory_rss{") {
			t.Fatal("stale marker for a series still there")
		}
	}

	// A failed scrape ends every series, reports up 0, and keeps going after.
	failed := c.Process(nil, "", scrapeTime.Add(2*time.Minute), time.Second, ix, errors.New("connection refused"))
	if failed.Stale != first.Scraped-dropped {
		t.Fatalf("failed scrape: %d stale markers, want %d", failed.Stale, first.Scraped-dropped)
	}
	if up := failed.View.Samples[0]; up.V() != 0 {
		t.Fatalf("up = %v after a failed scrape", up.V())
	}
	back := c.Process(body, "", scrapeTime.Add(3*time.Minute), time.Second, ix, nil)
	if back.Err != nil || back.Stale != 0 || len(back.Send) != first.Scraped+numSelfFamilies {
		t.Fatalf("after recovery: err %v, %d stale, %d sent, want %d", back.Err, back.Stale, len(back.Send), first.Scraped+numSelfFamilies)
	}
}

func TestParseErrorNamesTheLineAndFailsTheTargetAlone(t *testing.T) {
	good := readCapture(t, captures[0])
	lines := strings.Split(string(good), "\n")
	for _, lineNo := range []int{1, 3, 250, len(lines) - 1} {
		broken := append([]string(nil), lines...)
		broken[lineNo-1] = `container_cpu_usage_seconds_total{namespace="x" 12`
		c := NewTargetCache(testTarget(), true)
		c.Process(good, "", scrapeTime, time.Second, nil, nil)
		res := c.Process([]byte(strings.Join(broken, "\n")), "", scrapeTime.Add(time.Minute), time.Second, nil, nil)
		var pe *ParseError
		if !errors.As(res.Err, &pe) || pe.Line != lineNo {
			t.Fatalf("broken line %d: got error %v", lineNo, res.Err)
		}
		if !strings.Contains(res.Err.Error(), "line ") {
			t.Fatalf("error does not name the line: %v", res.Err)
		}
		if res.View.Samples[0].V() != 0 || len(res.View.Samples) != numSelfFamilies {
			t.Fatalf("a failed parse must leave only up=0 and friends in the view")
		}
		for _, s := range res.Send {
			if !value.IsStaleNaN(s.V) && !isSelf(c, s.Ref) {
				t.Fatalf("a failed parse sent a sample")
			}
		}
	}
}

func isSelf(c *TargetCache, s model.SeriesRef) bool {
	for _, x := range c.self {
		if x == s {
			return true
		}
	}
	return false
}

func TestUnknownNamespaceGetsLabelsOnceKnown(t *testing.T) {
	body := readCapture(t, captures[0])
	c := NewTargetCache(testTarget(), false)
	res := c.Process(body, "", scrapeTime, time.Second, nil, nil)
	if res.Enriched != 0 || res.Unknown == 0 {
		t.Fatalf("enriched %d unknown %d before the index knows anything", res.Enriched, res.Unknown)
	}
	res = c.Process(body, "", scrapeTime.Add(time.Second), time.Second, testIndex(1, baseTeams), nil)
	if res.Unknown != 0 || res.Enriched == 0 {
		t.Fatalf("enriched %d unknown %d once the index knows the namespaces", res.Enriched, res.Unknown)
	}
}

func TestSteadyStateDoesNotAllocatePerSample(t *testing.T) {
	body := readCapture(t, captures[0])
	ix := testIndex(1, baseTeams)
	c := NewTargetCache(testTarget(), true)
	now := scrapeTime
	c.Process(body, "", now, time.Second, ix, nil)
	c.Process(body, "", now, time.Second, ix, nil)
	allocs := testing.AllocsPerRun(5, func() {
		now = now.Add(time.Second)
		c.Process(body, "", now, time.Second, ix, nil)
	})
	// A scrape allocates its parser and the view's slices: a constant, not
	// a count of samples (the capture has 4,621).
	if allocs > 40 {
		t.Fatalf("%v allocations per scrape of %d samples", allocs, 4621)
	}
}

func TestBelongsTo(t *testing.T) {
	for _, tc := range []struct {
		name, fam, typ string
		want           bool
	}{
		{"rest_client_request_latency_seconds_bucket", "rest_client_request_latency_seconds", "histogram", true},
		{"rest_client_request_latency_seconds_sum", "rest_client_request_latency_seconds", "histogram", true},
		{"go_gc_duration_seconds_count", "go_gc_duration_seconds", "summary", true},
		{"go_gc_duration_seconds_bucket", "go_gc_duration_seconds", "summary", false},
		{"machine_cpu_cores", "machine_cpu", "gauge", false},
		{"container_cpu_usage_seconds_total", "container_cpu_usage_seconds_total", "counter", true},
	} {
		if got := belongsTo(tc.name, tc.fam, tc.typ); got != tc.want {
			t.Errorf("belongsTo(%q, %q, %q) = %v", tc.name, tc.fam, tc.typ, got)
		}
	}
}

func TestAppendFloatRoundTrips(t *testing.T) {
	for _, v := range []float64{0, 1, -1.5, 1e-300, 1.7976931348623157e308, math.Inf(1), math.Inf(-1), 123456789012} {
		got := string(enrich.AppendFloat(nil, v))
		f, err := strconv.ParseFloat(strings.TrimPrefix(got, "+"), 64)
		if err != nil || f != v {
			t.Errorf("%v -> %q -> %v, %v", v, got, f, err)
		}
	}
}

// textParser is the reference parser, with the legacy (ASCII) name rules
// that Prometheus 2.x and every receiver accept.
func textParser() *expfmt.TextParser {
	p := expfmt.NewTextParser(commonmodel.LegacyValidation)
	return &p
}

// The scanner predicts each series from the previous scrape's order; when
// the order changes, series come and go, or a line is almost the same, the
// result must be exactly what a cache that never saw the target produces.
func TestPredictionNeverChangesTheResult(t *testing.T) {
	body := readCapture(t, captures[1])
	lines := strings.Split(strings.TrimRight(string(body), "\n"), "\n")
	var samples []int
	for i, l := range lines {
		if l != "" && l[0] != '#' {
			samples = append(samples, i)
		}
	}
	variants := map[string][]string{}
	swapped := append([]string(nil), lines...)
	for k := 0; k+1 < len(samples); k += 7 {
		i, j := samples[k], samples[k+1]
		swapped[i], swapped[j] = swapped[j], swapped[i]
	}
	variants["neighbours swapped"] = swapped
	inserted := append([]string(nil), lines...)
	for k := len(samples) - 1; k >= 0; k -= 50 {
		i := samples[k]
		extra := strings.Replace(lines[i], "{", `{new_label="x",`, 1)
		inserted = append(inserted[:i+1], append([]string{extra}, inserted[i+1:]...)...)
	}
	variants["new series inserted"] = inserted
	removed := []string{}
	for i, l := range lines {
		if i%5 != 0 || l == "" || l[0] == '#' {
			removed = append(removed, l)
		}
	}
	variants["every fifth series gone"] = removed
	sameLength := append([]string(nil), lines...)
	for k := 0; k < len(samples); k += 3 {
		i := samples[k]
		// Same length, one label value byte changed: a different series.
		sameLength[i] = strings.Replace(lines[i], `id="/`, `id="X`, 1)
	}
	variants["same length, other bytes"] = sameLength

	ix := testIndex(1, baseTeams)
	for name, v := range variants {
		t.Run(name, func(t *testing.T) {
			payload := []byte(strings.Join(v, "\n") + "\n")
			warm := NewTargetCache(testTarget(), false)
			warm.Process(body, "", scrapeTime, time.Second, ix, nil)
			got := warm.Process(payload, "", scrapeTime.Add(time.Minute), time.Second, ix, nil)
			want := NewTargetCache(testTarget(), false).Process(payload, "", scrapeTime.Add(time.Minute), time.Second, ix, nil)
			if got.Err != nil || want.Err != nil {
				t.Fatal(got.Err, want.Err)
			}
			var g, w bytes.Buffer
			if err := view.WriteText(&g, []*view.TargetView{got.View}, nil); err != nil {
				t.Fatal(err)
			}
			if err := view.WriteText(&w, []*view.TargetView{want.View}, nil); err != nil {
				t.Fatal(err)
			}
			// scrape_series_added differs by design: the warm cache knew most series.
			seriesAdded := regexp.MustCompile(`(?m)^scrape_series_added\{.*\n`)
			if seriesAdded.ReplaceAllString(g.String(), "") != seriesAdded.ReplaceAllString(w.String(), "") {
				t.Fatal("a warm cache renders the payload differently from a cold one")
			}
			if got.Scraped != want.Scraped || got.Enriched != want.Enriched {
				t.Fatalf("scraped %d/%d enriched %d/%d", got.Scraped, want.Scraped, got.Enriched, want.Enriched)
			}
		})
	}
}

// A view's buffers are reused two scrapes later, but never while a /metrics
// render still holds it.
func TestViewBuffersReusedOnlyWhenUnread(t *testing.T) {
	body := readCapture(t, captures[1])
	ix := testIndex(1, baseTeams)
	c := NewTargetCache(testTarget(), false)
	v := view.NewView()
	now := scrapeTime
	scrape := func() *view.TargetView {
		now = now.Add(time.Second)
		res := c.Process(body, "", now, time.Second, ix, nil)
		c.Recycle(v.Set(res.View))
		return res.View
	}
	first := scrape()
	scrape()
	third := scrape()
	if &third.Samples[0] != &first.Samples[0] {
		t.Fatal("an unread view's buffers were not reused")
	}
	held := v.Targets() // a render in progress holds the third view
	var before bytes.Buffer
	if err := view.WriteText(&before, held, nil); err != nil {
		t.Fatal(err)
	}
	scrape()
	fifth := scrape()
	scrape()
	if &fifth.Samples[0] == &third.Samples[0] {
		t.Fatal("a view being read was reused")
	}
	var after bytes.Buffer
	if err := view.WriteText(&after, held, nil); err != nil {
		t.Fatal(err)
	}
	if before.String() != after.String() {
		t.Fatal("a view changed under its reader")
	}
	v.Release(held)
}

func TestExternalLabelsOnEverySeries(t *testing.T) {
	body := readCapture(t, captures[0])
	c := NewTargetCache(testTarget(), true, enrich.Label{Name: "cluster", Value: "prod"}, enrich.Label{Name: "node", Value: "ignored"})
	res := c.Process(body, "", scrapeTime, time.Second, testIndex(1, baseTeams), nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	for _, s := range res.Send {
		line := string(enrich.AppendSeriesText(nil, s.Table, s.Ref))
		if !strings.Contains(line, `cluster="prod"`) || !strings.Contains(line, `node="node-a"`) || strings.Contains(line, "ignored") {
			t.Fatalf("external labels: %s", line)
		}
	}
}

// TestChurnCompactsTheLabelTable: pods come and go; their labels must not
// pile up, and every sample sent must still carry the right labels, also
// across a compaction (samples of earlier scrapes keep their tables).
func TestChurnCompactsTheLabelTable(t *testing.T) {
	c := NewTargetCache(testTarget(), true)
	ix := testIndex(1, baseTeams)
	var kept []model.Sample
	var keptText []string
	maxSize := 0
	for i := range 200 {
		var b strings.Builder
		b.WriteString("# TYPE container_memory_rss gauge\n")
		for p := range 40 {
			fmt.Fprintf(&b, "container_memory_rss{container=\"app\",id=\"/kubepods/pod-%d-%d-%s\",namespace=\"default\",pod=\"web-%d-%d\"} %d\n",
				i, p, strings.Repeat("x", 60), i, p, p)
		}
		res := c.Process([]byte(b.String()), "", scrapeTime.Add(time.Duration(i)*15*time.Second), time.Second, ix, nil)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		if i%37 == 0 {
			// Hold on to a sample, as a slow remote-write queue would.
			s := res.Send[0]
			kept = append(kept, s)
			keptText = append(keptText, string(enrich.AppendSeriesText(nil, s.Table, s.Ref)))
		}
		maxSize = max(maxSize, c.labels.Size())
	}
	ids := map[uint64]bool{}
	for i, s := range kept {
		ids[s.Table.ID] = true
		if got := string(enrich.AppendSeriesText(nil, s.Table, s.Ref)); got != keptText[i] {
			t.Fatalf("a held sample changed labels after compaction:\n%s\nwant\n%s", got, keptText[i])
		}
	}
	if len(ids) < 2 {
		t.Fatal("the label table was never compacted")
	}
	if c.Len() > 40*(evictAfter+2) {
		t.Fatalf("%d entries cached for 40 live series", c.Len())
	}
	if maxSize > 1<<20 {
		t.Fatalf("label table grew to %d bytes for 40 live series", maxSize)
	}
}
