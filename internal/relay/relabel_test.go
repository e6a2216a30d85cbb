package relay

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/model/textparse"

	capturefiles "github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/captures"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relabeling"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"
)

// promKept is what Prometheus keeps of a payload with metric relabeling:
// its parser, target labels as honor_labels: true adds them, relabel.ProcessBuilder.
func promKept(t *testing.T, body []byte, target []enrich.Label, cfgs []*relabel.Config) map[string]bool {
	p := textparse.NewPromParser(body, labels.NewSymbolTable(), false)
	kept, seen := map[string]bool{}, map[string]bool{}
	for {
		et, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if et != textparse.EntrySeries {
			continue
		}
		var ls labels.Labels
		p.Labels(&ls)
		if seen[ls.String()] {
			continue
		}
		seen[ls.String()] = true
		lb := labels.NewBuilder(ls)
		for _, l := range target {
			if !ls.Has(l.Name) {
				lb.Set(l.Name, l.Value)
			}
		}
		if relabel.ProcessBuilder(lb, cfgs...) {
			kept[lb.Labels().String()] = true
		}
	}
	return kept
}

func viewSeries(tv *view.TargetView) map[string]bool {
	out := map[string]bool{}
	for _, s := range tv.Samples[:len(tv.Samples)-numSelfFamilies] {
		b := labels.NewScratchBuilder(16)
		it := tv.Table.Labels(s.Ref)
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
			got := viewSeries(first.View)
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
			if len(viewSeries(second.View)) != len(want) {
				t.Errorf("second scrape keeps %d series, want %d", len(viewSeries(second.View)), len(want))
			}
		})
	}
}

func selfValue(tv *view.TargetView, fam int) float64 {
	return tv.Samples[len(tv.Samples)-numSelfFamilies+fam].V
}
