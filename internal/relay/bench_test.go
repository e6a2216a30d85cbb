package relay

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"

	"github.com/cespare/xxhash/v2"
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

// BenchmarkProcessChurn is a target under pod churn, as loadbench's -churn
// 0.33 profile: at every scrape a third of the 1.35 capture's 18 pods are
// replaced by new ones (new pod name, UID and container ids, so about 1,350
// of its 4,600 series are new and as many go stale). The series of a
// replaced pod are created, sent and, once gone for evictAfter scrapes,
// evicted; the cache's label table is compacted as it fills with the gone.
// The payloads cycle, but a pod generation comes back only once its
// tombstones expired and were swept (tombstoneTTL, sweepEvery), as a new
// pod's name never comes back: with a shorter cycle every "new" series
// would find a tombstone.
func BenchmarkProcessChurn(b *testing.B) {
	body := readCapture(b, captures[0])
	const groups, payloads = 3, 60
	bodies := churnPayloads(b, body, groups, payloads)
	n := countSamples(body)
	ix := testIndex(1, baseTeams)
	c := NewTargetCache(testTarget(), false)
	now := scrapeTime
	k, added := 0, 0
	scrape := func() {
		now = now.Add(15 * time.Second)
		res := c.Process(bodies[k%payloads], "", now, time.Second, ix, nil)
		if res.Err != nil {
			b.Fatal(res.Err)
		}
		added += res.SeriesAdded
		k++
	}
	for range 2 * payloads { // past the first scrape and a cycle of evictions
		scrape()
	}
	added = 0
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	iters := 0
	cpu0 := processCPU() // with the garbage collector's work, and steadier than the wall clock on a shared machine
	for b.Loop() {
		scrape()
		iters++
	}
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(iters)/float64(n), "cpu-ns/sample")
	perSample(b, n)
	b.ReportMetric(float64(added)/float64(iters), "new/op")
}

// BenchmarkProcessChurnOnset is the start of pod churn (a rollout), as the
// churn window of loadbench measures it: a target in steady state, then
// six scrapes with a third of its pods replaced at each. Unlike
// BenchmarkProcessChurn the cache has not reached its size under churn yet:
// it grows by the series of the pods gone, which it keeps evictAfter
// scrapes, and so does its label table. Only the six scrapes are measured.
func BenchmarkProcessChurnOnset(b *testing.B) {
	body := readCapture(b, captures[0])
	const groups, payloads, rounds = 3, 24, 6
	bodies := churnPayloads(b, body, groups, payloads)
	n := countSamples(body)
	ix := testIndex(1, baseTeams)
	b.SetBytes(int64(len(body)) * rounds)
	b.ReportAllocs()
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		c := NewTargetCache(testTarget(), false)
		now := scrapeTime
		scrape := func(body []byte) {
			now = now.Add(15 * time.Second)
			if res := c.Process(body, "", now, time.Second, ix, nil); res.Err != nil {
				b.Fatal(res.Err)
			}
		}
		cpu += churnRounds(b, bodies, 3, rounds, scrape) // first scrape, then steady
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(rounds*n), "cpu-ns/sample")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rounds*n), "ns/sample")
}

// BenchmarkProcessChurnOnsetTargets is BenchmarkProcessChurnOnset in the
// load test's shape: many targets, each payload streamed, their caches and
// label tables competing for the CPU's caches, a steady window before the
// churn. Only the churn rounds are measured.
func BenchmarkProcessChurnOnsetTargets(b *testing.B) {
	body := readCapture(b, captures[0])
	const targets, steady, rounds = 24, 5, 4
	bodies := churnPayloads(b, body, 3, 9)
	n := countSamples(body)
	ix := testIndex(1, baseTeams)
	b.ReportAllocs()
	var cpu time.Duration
	var buf []byte
	for b.Loop() {
		b.StopTimer()
		cs := make([]*TargetCache, targets)
		for i := range cs {
			cs[i] = NewTargetCache(testTarget(), false)
		}
		now := scrapeTime
		round := func(body []byte) {
			now = now.Add(15 * time.Second)
			for _, c := range cs {
				var res *Result
				if res, buf = c.ProcessStream(bytes.NewReader(body), now, ix, buf); res.Err != nil {
					b.Fatal(res.Err)
				}
			}
		}
		cpu += churnRounds(b, bodies, steady, rounds, round)
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(rounds*n*targets), "cpu-ns/sample")
}

// churnRounds runs round on bodies[0] warm times, unmeasured (the timer is
// stopped when it is called), then on bodies[1..rounds] with the timer
// running, and returns the process CPU those took.
func churnRounds(b *testing.B, bodies [][]byte, warm, rounds int, round func([]byte)) time.Duration {
	for range warm {
		round(bodies[0])
	}
	runtime.GC()
	b.StartTimer()
	cpu0 := processCPU()
	for k := 1; k <= rounds; k++ {
		round(bodies[k])
	}
	return processCPU() - cpu0
}

// churnPayloads returns payloads of body in which its pods, split in groups,
// are replaced one group a scrape: payload k has the pods of group k%groups
// replaced since payload k-1. A pod's generation is its name, UID and
// container ids; the payloads form a cycle (payloads a multiple of groups),
// so that the last one is followed by the first as by a next generation.
func churnPayloads(tb testing.TB, body []byte, groups, payloads int) [][]byte {
	tb.Helper()
	lines := strings.SplitAfter(string(body), "\n")
	uidRe := regexp.MustCompile(`pod([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})`)
	idRe := regexp.MustCompile(`[0-9a-f]{64}`)
	type pod struct {
		tokens []string // name first
		group  int
	}
	pods := map[string]*pod{}
	var order []string
	podOf := make([]string, len(lines))
	for i, l := range lines {
		if l == "" || l[0] == '#' {
			continue
		}
		_, rest, ok := strings.Cut(l, `pod="`)
		if !ok || rest[0] == '"' {
			continue
		}
		name := rest[:strings.IndexByte(rest, '"')]
		podOf[i] = name
		p := pods[name]
		if p == nil {
			p = &pod{tokens: []string{`pod="` + name + `"`}, group: len(order) % groups}
			pods[name] = p
			order = append(order, name)
		}
		for _, m := range uidRe.FindAllStringSubmatch(l, -1) {
			if !slices.Contains(p.tokens, m[1]) {
				p.tokens = append(p.tokens, m[1])
			}
		}
		for _, m := range idRe.FindAllString(l, -1) {
			if !slices.Contains(p.tokens, m) {
				p.tokens = append(p.tokens, m)
			}
		}
	}
	if len(order) < groups {
		tb.Fatalf("%d pods, want at least %d", len(order), groups)
	}
	// gen: a token of generation g, as long as the original (ids and
	// UIDs keep their shape).
	gen := func(tok string, g int) string {
		if g == 0 {
			return tok
		}
		if strings.HasPrefix(tok, `pod="`) {
			return tok[:len(tok)-1] + fmt.Sprintf("-g%d", g) + `"`
		}
		out := []byte(tok)
		h := xxhash.Sum64String(fmt.Sprintf("%s/%d", tok, g))
		for i := range out {
			if out[i] != '-' {
				out[i] = "0123456789abcdef"[h&15]
				h = h>>4 | h<<60
				if i%16 == 15 {
					h = xxhash.Sum64(out[:i+1])
				}
			}
		}
		return string(out)
	}
	cycle := payloads / groups
	out := make([][]byte, payloads)
	for k := range out {
		repl := map[string]*strings.Replacer{}
		for _, name := range order {
			p := pods[name]
			// Generations group g has had by payload k: one at each
			// k' <= k with k' % groups == g, counted modulo the cycle.
			g := (k + groups - p.group) / groups % cycle
			var kv []string
			for _, t := range p.tokens {
				kv = append(kv, t, gen(t, g))
			}
			repl[name] = strings.NewReplacer(kv...)
		}
		var buf strings.Builder
		buf.Grow(len(body) + len(body)/8)
		for i, l := range lines {
			if podOf[i] == "" {
				buf.WriteString(l)
				continue
			}
			buf.WriteString(repl[podOf[i]].Replace(l))
		}
		out[k] = []byte(buf.String())
	}
	return out
}
