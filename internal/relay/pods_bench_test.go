package relay

import (
	"runtime"
	"testing"
	"time"
)

// BenchmarkProcessPods is BenchmarkProcess on the 1.35 cAdvisor capture
// with the pod index off, with pod labels and workloads, and with them and
// the pod-on-node check (which refreshes the target's pod scopes every
// scrape). Every pod of the capture is in the index, on the target's node.
func BenchmarkProcessPods(b *testing.B) {
	body := readCapture(b, captures[0])
	n := countSamples(body)
	for _, tc := range []struct {
		name  string
		pods  bool
		check NodeCheck
	}{{"off", false, NodeCheckOff}, {"labels", true, NodeCheckOff}, {"labels+check", true, NodeCheckPlain}} {
		b.Run(tc.name, func(b *testing.B) {
			ix := testIndex(1, baseTeams)
			c := NewTargetCache(testTarget(), true)
			if tc.pods {
				c.SetPods(PodConfig{Source: newPodBed(b, "node-a").ix, Check: tc.check})
			}
			now := scrapeTime
			c.Process(body, "", now, time.Second, ix, nil)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(time.Second)
				if res := c.Process(body, "", now, time.Second, ix, nil); res.NotOnNode != 0 {
					b.Fatal("series found off their node")
				}
			}
			perSample(b, n)
		})
	}
}

// BenchmarkPodScopeBytes reports what the pod index adds to a target's
// cache per pod (its scope: key, merged labels, version) and per series,
// with the 18 pods of the 1.35 capture, each with two pod labels and its
// workload, against the same cache with the index off.
func BenchmarkPodScopeBytes(b *testing.B) {
	body := readCapture(b, captures[0])
	ix := testIndex(1, baseTeams)
	src := newPodBed(b, "node-a").ix
	heap := func(pods bool) (uint64, *TargetCache) {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c := NewTargetCache(testTarget(), true)
		if pods {
			c.SetPods(PodConfig{Source: src, Check: NodeCheckPlain})
		}
		for k := range 4 {
			c.Process(body, "", scrapeTime.Add(time.Duration(k)*time.Second), time.Second, ix, nil)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		return after.HeapAlloc - before.HeapAlloc, c
	}
	for b.Loop() {
		off, c1 := heap(false)
		on, c2 := heap(true)
		b.ReportMetric((float64(on)-float64(off))/float64(len(capturePods)), "B/pod")
		b.ReportMetric((float64(on)-float64(off))/float64(c2.Len()), "B/series")
		runtime.KeepAlive(c1)
		runtime.KeepAlive(c2)
	}
}
