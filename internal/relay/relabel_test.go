package relay

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/model/value"

	capturefiles "github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/captures"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relabeling"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relabeling/relabelingtest"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"
)

// promKept is what Prometheus keeps of a payload with metric relabeling.
func promKept(t *testing.T, body []byte, target []enrich.Label, cfgs []*relabel.Config) map[string]bool {
	b := labels.NewScratchBuilder(len(target))
	for _, l := range target {
		b.Add(l.Name, l.Value)
	}
	b.Sort()
	kept, _, err := relabelingtest.KeptSeries(body, b.Labels(), cfgs)
	if err != nil {
		t.Fatal(err)
	}
	return kept
}

func viewSeriesSet(tv *view.TargetView) map[string]bool {
	out := map[string]bool{}
	for i := range tv.Samples[:len(tv.Samples)-numSelfFamilies] {
		b := labels.NewScratchBuilder(16)
		it := tv.Table.Labels(tv.Ref(i))
		for it.Next() {
			b.Add(string(it.Name), string(it.Value))
		}
		b.Sort()
		out[b.Labels().String()] = true
	}
	return out
}

// With the kube-prometheus preset the relay keeps exactly the series
// Prometheus keeps with kube-prometheus's metricRelabelings, and a dropped
// series is relabelled once: later scrapes find it in the cache.
func TestMetricRelabelKeepsWhatPrometheusKeeps(t *testing.T) {
	rules, err := relabeling.Preset(relabeling.PresetKubePrometheus)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ capture, endpoint, path string }{
		{"1_35", "cadvisor", "/metrics/cadvisor"},
		{"gke-2018", "cadvisor", "/metrics/cadvisor"},
		{"kubelet-metrics", "metrics", "/metrics"},
		{"probes-1_35", "probes", "/metrics/probes"},
		{"resource-1_35", "resource", "/metrics/resource"},
	} {
		t.Run(tc.capture, func(t *testing.T) {
			body, err := capturefiles.Read(tc.capture)
			if err != nil {
				t.Fatal(err)
			}
			tg := testTarget()
			tg.Path, tg.Endpoint, tg.MetricRelabel = tc.path, tc.endpoint, rules[tc.endpoint]
			tg.Labels = labelsOf("instance", "198.18.0.10:10250", "job", "kubelet", "metrics_path", tc.path, "node", "node-a")
			want := promKept(t, body, tg.Labels, rules[tc.endpoint])
			c := NewTargetCache(tg, true)
			ix := enrich.NewNamespaceIndex(1, nil) // no namespace known: series keep their own labels only
			first := c.Process(append([]byte(nil), body...), "", scrapeTime, time.Second, ix, nil)
			if first.Err != nil {
				t.Fatal(first.Err)
			}
			got := viewSeriesSet(first.View)
			if len(got) != len(want) {
				t.Errorf("relay keeps %d series, Prometheus %d", len(got), len(want))
			}
			for s := range want {
				if !got[s] {
					t.Errorf("Prometheus keeps %s, the relay does not", s)
					break
				}
			}
			for s := range got {
				if !want[s] {
					t.Errorf("the relay keeps %s, Prometheus does not", s)
					break
				}
			}
			post, added := selfValue(first.View, famPostRelabel), selfValue(first.View, famSeriesAdded)
			if int(post) != len(want) || int(added) != len(want) || first.Dropped != first.Scraped-first.Duplicates-len(want) {
				t.Errorf("scrape_samples_post_metric_relabeling %v, scrape_series_added %v, dropped %d; want %d, %d, %d",
					post, added, first.Dropped, len(want), len(want), first.Scraped-first.Duplicates-len(want))
			}
			runs := c.relabelRuns
			second := c.Process(append([]byte(nil), body...), "", scrapeTime.Add(30*time.Second), time.Second, ix, nil)
			if c.relabelRuns != runs {
				t.Errorf("second scrape relabelled %d series again; the cache should know them", c.relabelRuns-runs)
			}
			if second.Dropped != first.Dropped || second.SeriesAdded != 0 || selfValue(second.View, famSeriesAdded) != 0 {
				t.Errorf("second scrape: dropped %d (first %d), series added %d", second.Dropped, first.Dropped, second.SeriesAdded)
			}
			if len(viewSeriesSet(second.View)) != len(want) {
				t.Errorf("second scrape keeps %d series, want %d", len(viewSeriesSet(second.View)), len(want))
			}
		})
	}
}

func selfValue(tv *view.TargetView, fam int) float64 {
	return tv.Samples[len(tv.Samples)-numSelfFamilies+fam].V()
}

// BenchmarkProcessRelabel is BenchmarkProcess with the kube-prometheus preset: in the steady
// state a dropped series costs its hash lookup (no prediction: it is not in the previous
// scrape's order), a kept one what it costs without relabeling.
func BenchmarkProcessRelabel(b *testing.B) {
	rules, err := relabeling.Preset(relabeling.PresetKubePrometheus)
	if err != nil {
		b.Fatal(err)
	}
	body := readCapture(b, captures[0])
	n := countSamples(body)
	for _, preset := range []bool{false, true} {
		b.Run(map[bool]string{false: "none", true: "kube-prometheus"}[preset], func(b *testing.B) {
			tg := testTarget()
			if preset {
				tg.MetricRelabel = rules["cadvisor"]
			}
			benchSteady(b, NewTargetCache(tg, true), body, n)
		})
	}
}

// Rules see the Namespace's labels: when a namespace moves to a team a rule drops, its series
// end with a stale marker and stop; when it moves back they come back, with their new team.
func TestMetricRelabelOnTeamFollowsNamespaceRelabel(t *testing.T) {
	drop, err := relabeling.Parse([]byte("cadvisor:\n- source_labels: [team]\n  regex: backend\n  action: drop\n"), "rules.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	body := readCapture(t, captures[1])
	tg := testTarget()
	tg.MetricRelabel = drop["cadvisor"]
	c := NewTargetCache(tg, false)
	first := c.Process(body, "", scrapeTime, time.Second, testIndex(1, baseTeams), nil)
	count := func(res *Result, ns string) (kept, stale int) {
		for k, ss := range sentByName(res.Send) {
			if !strings.Contains(k, `namespace="`+ns+`"`) {
				continue
			}
			for _, s := range ss {
				if value.IsStaleNaN(s.V) {
					stale++
				} else {
					kept++
				}
			}
		}
		return kept, stale
	}
	before, _ := count(first, "scraper")
	if before == 0 || first.Dropped != 0 {
		t.Fatalf("scraper (team observability): %d sent, %d dropped; want all sent", before, first.Dropped)
	}
	// scraper becomes team backend: its series are dropped, each ended by one stale marker.
	toBackend := map[string]string{"kube-system": "platform", "scraper": "backend", "default": "frontend"}
	res := c.Process(body, "", scrapeTime.Add(30*time.Second), time.Second, testIndex(2, toBackend), nil)
	kept, stale := count(res, "scraper")
	if kept != 0 || stale != before || res.Dropped != before {
		t.Fatalf("after the move to backend: %d sent, %d stale markers, %d dropped; want 0, %d, %d", kept, stale, res.Dropped, before, before)
	}
	// Steady: dropped, and no stale marker again.
	res = c.Process(body, "", scrapeTime.Add(60*time.Second), time.Second, testIndex(2, toBackend), nil)
	if kept, stale := count(res, "scraper"); kept != 0 || stale != 0 || res.Dropped != before {
		t.Fatalf("steady: %d sent, %d stale, %d dropped", kept, stale, res.Dropped)
	}
	// Back to a kept team: the series return with it.
	toFrontend := map[string]string{"kube-system": "platform", "scraper": "frontend", "default": "frontend"}
	res = c.Process(body, "", scrapeTime.Add(90*time.Second), time.Second, testIndex(3, toFrontend), nil)
	if kept, _ := count(res, "scraper"); kept != before || res.Dropped != 0 {
		t.Fatalf("back to frontend: %d sent (want %d), %d dropped", kept, before, res.Dropped)
	}
	for k := range sentByName(res.Send) {
		if strings.Contains(k, `namespace="scraper"`) && !strings.Contains(k, `team="frontend"`) {
			t.Fatalf("scraper series without its new team: %s", k)
		}
	}
}
