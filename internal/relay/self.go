package relay

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// SelfJob is the job label of the relay's own metrics when it sends them.
const SelfJob = "kubelet-meta-proxy"

// maxSelfInterner bounds the self-metrics label table; past it a new one is
// started (old tables stay valid for samples already queued).
const maxSelfInterner = 16 << 20

// SelfScraper sends the relay's own metrics to a Sink, as a Prometheus
// scraping /metrics/self every Interval would store them: job and instance
// labels, the external labels (unless the series has the label), histograms
// and summaries as their _bucket/quantile, _sum and _count series.
type SelfScraper struct {
	Gatherer       prometheus.Gatherer
	Sink           Sink
	Interval       time.Duration
	Instance       string
	ExternalLabels []model.Label // sorted by name
	Logger         *slog.Logger

	interner *model.LabelInterner
	ls       []model.Label
	out      []model.Sample
}

// Run sends every Interval until ctx ends.
func (s *SelfScraper) Run(ctx context.Context) {
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := s.Once(time.Now()); err != nil {
			s.Logger.Warn("gathering self-metrics for remote write", "err", err, "samples", n)
		}
	}
}

// Once gathers and appends one round, returning the samples appended.
// Gather errors are returned, with what could be gathered still sent.
func (s *SelfScraper) Once(now time.Time) (int, error) {
	mfs, err := s.Gatherer.Gather()
	if s.interner == nil || s.interner.Size() > maxSelfInterner {
		s.interner = model.NewLabelInterner(xxhash.Sum64String("self:" + s.Instance))
	}
	ts := now.UnixMilli()
	s.out = s.out[:0]
	var refs []model.SeriesRef
	add := func(name string, m *dto.Metric, extraName, extraValue string, v float64) {
		s.ls = s.ls[:0]
		s.ls = append(s.ls, model.Label{Name: "__name__", Value: name},
			model.Label{Name: "instance", Value: s.Instance}, model.Label{Name: "job", Value: SelfJob})
		for _, lp := range m.GetLabel() {
			s.ls = setLabel(s.ls, lp.GetName(), lp.GetValue())
		}
		if extraName != "" {
			s.ls = setLabel(s.ls, extraName, extraValue)
		}
		slices.SortFunc(s.ls, func(a, b model.Label) int { return strings.Compare(a.Name, b.Name) })
		for _, l := range s.ExternalLabels {
			if _, found := slices.BinarySearchFunc(s.ls, l.Name, func(a model.Label, n string) int { return strings.Compare(a.Name, n) }); !found {
				s.ls = append(s.ls, l)
			}
		}
		slices.SortFunc(s.ls, func(a, b model.Label) int { return strings.Compare(a.Name, b.Name) })
		refs = append(refs, s.interner.Intern(s.ls))
		s.out = append(s.out, model.Sample{T: ts, V: v})
	}
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				add(name, m, "", "", m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, m, "", "", m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				add(name, m, "", "", m.GetUntyped().GetValue())
			case dto.MetricType_SUMMARY:
				sm := m.GetSummary()
				for _, q := range sm.GetQuantile() {
					add(name, m, "quantile", formatFloat(q.GetQuantile()), q.GetValue())
				}
				add(name+"_sum", m, "", "", sm.GetSampleSum())
				add(name+"_count", m, "", "", float64(sm.GetSampleCount()))
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				inf := false
				for _, b := range h.GetBucket() {
					inf = inf || math.IsInf(b.GetUpperBound(), 1)
					add(name+"_bucket", m, "le", formatFloat(b.GetUpperBound()), float64(b.GetCumulativeCount()))
				}
				if !inf {
					add(name+"_bucket", m, "le", "+Inf", float64(h.GetSampleCount()))
				}
				add(name+"_sum", m, "", "", h.GetSampleSum())
				add(name+"_count", m, "", "", float64(h.GetSampleCount()))
			}
		}
	}
	table := s.interner.Table()
	for i := range s.out {
		s.out[i].Table, s.out[i].Ref = table, refs[i]
	}
	s.Sink.Append(s.out)
	clear(s.out)
	return len(refs), err
}

func setLabel(ls []model.Label, name, value string) []model.Label {
	for i := range ls {
		if ls[i].Name == name {
			ls[i].Value = value
			return ls
		}
	}
	return append(ls, model.Label{Name: name, Value: value})
}

func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
