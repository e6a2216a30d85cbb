package relay

import (
	"fmt"
	"runtime"
	"strings"
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
			cpu0 := processCPU()
			for b.Loop() {
				now = now.Add(time.Second)
				if res := c.Process(body, "", now, time.Second, ix, nil); res.NotOnNode != 0 {
					b.Fatal("series found off their node")
				}
			}
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N)/float64(n), "cpu-ns/sample")
			perSample(b, n)
		})
	}
}

// manyPods returns the 1.35 capture with every pod's series cloned k times
// (pod NAME becomes NAME-c0 ... NAME-c{k-1}), and a pod bed holding every
// clone on node-a.
func manyPods(b *testing.B, k int) ([]byte, *podBed) {
	body := readCapture(b, captures[0])
	var out []byte
	for _, l := range strings.SplitAfter(string(body), "\n") {
		m := podRe.FindStringSubmatch(l)
		if m == nil || m[2] == "" {
			out = append(out, l...)
			continue
		}
		for i := range k {
			out = append(out, strings.Replace(l, `pod="`+m[2]+`"`, fmt.Sprintf(`pod="%s-c%d"`, m[2], i), 1)...)
		}
	}
	pb := newPodBed(b, "node-a")
	for _, p := range capturePods {
		for i := range k {
			q := p
			q.name = fmt.Sprintf("%s-c%d", p.name, i)
			pb.setPod(q, "node-a", map[string]string{"app.kubernetes.io/name": q.name + "-app", "team": "pod-team"})
		}
	}
	return out, pb
}

// BenchmarkPodScopeBytes reports the heap the pod index adds to one
// target's cache (scopes: key, merged labels, version; longer label sets in
// the label table) per pod and per series: the 1.35 capture with its 18 pods
// cloned 20 times (360 pods, two pod labels and the workload each), against
// the same cache with the index off. The index's own memory is podindex's
// TestMemoryPerPod.
func BenchmarkPodScopeBytes(b *testing.B) {
	const k = 20
	body, pb := manyPods(b, k)
	ix := testIndex(1, baseTeams)
	heap := func(pods bool) (uint64, *TargetCache) {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c := NewTargetCache(testTarget(), true)
		if pods {
			c.SetPods(PodConfig{Source: pb.ix, Check: NodeCheckPlain})
		}
		for i := range 3 {
			if res := c.Process(body, "", scrapeTime.Add(time.Duration(i)*time.Second), time.Second, ix, nil); res.Err != nil || res.NotOnNode != 0 {
				b.Fatal(res.Err, res.NotOnNode)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		return after.HeapAlloc - before.HeapAlloc, c
	}
	for b.Loop() {
		off, c1 := heap(false)
		on, c2 := heap(true)
		b.ReportMetric((float64(on)-float64(off))/float64(k*len(capturePods)), "B/pod")
		b.ReportMetric((float64(on)-float64(off))/float64(c2.Len()), "B/series")
		runtime.KeepAlive(c1)
		runtime.KeepAlive(c2)
	}
}
