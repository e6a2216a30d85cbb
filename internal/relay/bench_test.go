package relay

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

func countSamples(b []byte) int {
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && l[0] != '#' {
			n++
		}
	}
	return n
}

func shortName(s string) string { return strings.TrimSuffix(strings.SplitN(s, "__", 2)[1], ".txt") }

func perSample(b *testing.B, samples int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(samples), "ns/sample")
}

// BenchmarkParse is the floor: the textparse lexer alone, reading every
// series and its value.
func BenchmarkParse(b *testing.B) {
	for _, name := range captures {
		body := readCapture(b, name)
		n := countSamples(body)
		b.Run(shortName(name), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				p := textparse.NewPromParser(body, labels.NewSymbolTable(), false)
				for {
					et, err := p.Next()
					if err == io.EOF {
						break
					}
					if et == textparse.EntrySeries {
						p.Series()
					}
				}
			}
			perSample(b, n)
		})
	}
}

// BenchmarkProcess is parse + enrich in steady state: every series known,
// what each scrape of a target costs.
func BenchmarkProcess(b *testing.B) {
	for _, name := range captures {
		body := readCapture(b, name)
		n := countSamples(body)
		b.Run(shortName(name), func(b *testing.B) {
			benchSteady(b, NewTargetCache(testTarget(), true), body, n)
		})
	}
}

// BenchmarkProcessCold is a target's first scrape: every series is built.
func BenchmarkProcessCold(b *testing.B) {
	body := readCapture(b, captures[0])
	n := countSamples(body)
	ix := testIndex(1, baseTeams)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		NewTargetCache(testTarget(), true).Process(body, "", scrapeTime, time.Second, ix, nil)
	}
	perSample(b, n)
}

// BenchmarkRender is the /metrics text view of one target's latest scrape.
func BenchmarkRender(b *testing.B) {
	for _, name := range captures {
		body := readCapture(b, name)
		n := countSamples(body)
		b.Run(shortName(name), func(b *testing.B) {
			res := NewTargetCache(testTarget(), true).Process(body, "", scrapeTime, time.Second, testIndex(1, baseTeams), nil)
			views := []*view.TargetView{res.View}
			b.ReportAllocs()
			for b.Loop() {
				if err := view.WriteText(io.Discard, views, nil); err != nil {
					b.Fatal(err)
				}
			}
			perSample(b, n)
		})
	}
}

// BenchmarkMemoryPerSeries reports the live heap each cached series costs
// in steady state (cache entry, encoded series, the published view and the
// recycled one) with many targets, after a few scrapes through a View.
func BenchmarkMemoryPerSeries(b *testing.B) {
	body := readCapture(b, captures[0])
	ix := testIndex(1, baseTeams)
	const targets = 20
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		caches := make([]*TargetCache, targets)
		view := view.NewView()
		series := 0
		for i := range caches {
			t := testTarget()
			t.Key = fmt.Sprintf("node/node-%d", i)
			t.Labels = append([]enrich.Label(nil), t.Labels...)
			t.Labels[len(t.Labels)-1].Value = fmt.Sprintf("node-%d", i)
			caches[i] = NewTargetCache(t, true)
			for k := range 4 {
				res := caches[i].Process(body, "", scrapeTime.Add(time.Duration(k)*time.Second), time.Second, ix, nil)
				caches[i].Recycle(view.Set(res.View))
			}
			series += caches[i].Len()
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(series), "B/series")
		runtime.KeepAlive(caches)
		runtime.KeepAlive(view)
	}
}

// benchSteady measures c's steady state on body (n samples): one scrape to
// fill the cache, then the same payload a second later, again and again.
func benchSteady(b *testing.B, c *TargetCache, body []byte, n int) {
	ix := testIndex(1, baseTeams)
	now := scrapeTime
	if res := c.Process(body, "", now, time.Second, ix, nil); res.Err != nil {
		b.Fatal(res.Err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Second)
		c.Process(body, "", now, time.Second, ix, nil)
	}
	perSample(b, n)
}
