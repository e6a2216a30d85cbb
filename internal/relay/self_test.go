package relay

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

type recordingSink struct {
	mu     sync.Mutex
	series map[string]float64
}

func (s *recordingSink) Append(in []model.Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, smp := range in {
		if !smp.Ref.Valid() {
			panic("invalid series appended")
		}
		var parts []string
		it := smp.Table.Labels(smp.Ref)
		for it.Next() {
			parts = append(parts, string(it.Name)+"="+string(it.Value))
		}
		s.series[strings.Join(parts, ",")] = smp.V
	}
}

func TestSelfScraperSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubelet_meta_proxy_x_total", Help: "x"}, []string{"reason", "cluster"})
	c.WithLabelValues("queue_full", "own").Add(3)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kubelet_meta_proxy_d_seconds", Help: "d", Buckets: []float64{0.5}})
	h.Observe(0.1)
	h.Observe(2)
	reg.MustRegister(c, h)
	sink := &recordingSink{series: map[string]float64{}}
	s := &SelfScraper{Gatherer: reg, Sink: sink, Interval: time.Second, Instance: "relay-0",
		ExternalLabels: []model.Label{{Name: "cluster", Value: "eu1"}, {Name: "region", Value: "west"}}}
	n, err := s.Once(time.Unix(100, 0))
	if err != nil || n != 5 {
		t.Fatalf("%d samples, %v", n, err)
	}
	want := map[string]float64{
		// The series' own cluster label wins over the external label, as in Prometheus.
		"__name__=kubelet_meta_proxy_x_total,cluster=own,instance=relay-0,job=kubelet-meta-proxy,reason=queue_full,region=west": 3,
		"__name__=kubelet_meta_proxy_d_seconds_bucket,cluster=eu1,instance=relay-0,job=kubelet-meta-proxy,le=0.5,region=west":   1,
		"__name__=kubelet_meta_proxy_d_seconds_bucket,cluster=eu1,instance=relay-0,job=kubelet-meta-proxy,le=+Inf,region=west":  2,
		"__name__=kubelet_meta_proxy_d_seconds_sum,cluster=eu1,instance=relay-0,job=kubelet-meta-proxy,region=west":             2.1,
		"__name__=kubelet_meta_proxy_d_seconds_count,cluster=eu1,instance=relay-0,job=kubelet-meta-proxy,region=west":           2,
	}
	for k, v := range want {
		if got, ok := sink.series[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if len(sink.series) != len(want) {
		keys := make([]string, 0, len(sink.series))
		for k := range sink.series {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		t.Errorf("series:\n%s", strings.Join(keys, "\n"))
	}
}
