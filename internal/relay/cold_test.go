package relay

import (
	"bytes"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
)

// TestProcessKeepsNoPayload: the labels of new series are read without a
// copy (TextScanner.AppendLabels), yet once a scrape ends nothing of the
// cache points into its payload, which the collector can then take (an
// outsized buffer is not pooled, pools.go).
func TestProcessKeepsNoPayload(t *testing.T) {
	c := NewTargetCache(testTarget(), true)
	buf := append([]byte(nil), readCapture(t, captures[0])...)
	collected := make(chan struct{})
	runtime.AddCleanup(&buf[0], func(ch chan struct{}) { close(ch) }, collected)
	res := c.Process(buf, "", scrapeTime, time.Second, testIndex(1, baseTeams), nil)
	if res.Err != nil || res.SeriesAdded == 0 {
		t.Fatalf("the scrape failed or added nothing: %v", res.Err)
	}
	buf = nil
	for range 20 {
		runtime.GC()
		select {
		case <-collected:
			runtime.KeepAlive(c)
			runtime.KeepAlive(res)
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("the payload is still reachable from the cache after the scrape")
}

// referenceOnly hides the *TextScanner behind the Scanner interface, so
// that new series take the reference way (labels.Labels, checkLabels,
// checkLabelLimits) and never the fast one (scrapedLabels).
type referenceOnly struct{ scrape.Scanner }

// processWith is Process on a text payload through sc's kind of scanner.
func processWith(c *TargetCache, body []byte, ref bool, now time.Time) *Result {
	st := c.begin(now, testIndex(1, baseTeams))
	var sc scrape.Scanner = scrape.NewTextScanner(body)
	if ref {
		sc = referenceOnly{sc}
	}
	return c.end(st, time.Second, c.parse(st, sc))
}

// TestFastLabelsAsReference: for the shapes the fast path takes and those
// next to them (empty values, a name twice, __name__ among the labels,
// every label limit at and over its bound), a scrape's outcome is the
// reference way's: the same error, or the same series sent.
func TestFastLabelsAsReference(t *testing.T) {
	payloads := []string{
		"m 1\n",
		"m{a=\"1\",b=\"2\"} 1\n",
		"m{b=\"2\",a=\"1\"} 1\n",
		"m{a=\"\",b=\"2\"} 1\n",
		"m{a=\"1\",a=\"2\"} 1\n",
		"m{b=\"1\",a=\"2\",b=\"3\"} 1\n",
		"m{a=\"\",a=\"2\"} 1\n",
		"m{__name__=\"x\"} 1\n",
		"m{a=\"1\",__name__=\"m\"} 1\n",
		"m{namespace=\"web\",pod=\"p\",instance=\"i\",job=\"j\"} 1\n",
		"m{namespace=\"\",pod=\"p\"} 1\n",
		"m{x=\"" + strings.Repeat("v", 40) + "\",abcdefghij=\"1\"} 1\n",
		"m{a=\"1234\",bcdef=\"123456\",c=\"1234567\",defghijk=\"12345678\",e=\"1234567890\"} 1\n",
		"container_cpu_usage_seconds_total{container=\"c\",cpu=\"total\",id=\"/kubepods/pod1\",image=\"\",name=\"n\",namespace=\"kube-system\",pod=\"p\"} 1 1700000000000\n",
	}
	limits := []Limits{{}}
	for _, n := range []int{3, 5, 6, 7, 8, 9} {
		limits = append(limits, Limits{LabelLimit: n}, Limits{LabelNameLengthLimit: n + 2}, Limits{LabelValueLengthLimit: n})
	}
	limits = append(limits, Limits{LabelLimit: 9, LabelNameLengthLimit: 10, LabelValueLengthLimit: 40})
	for _, p := range payloads {
		for _, l := range limits {
			var got [2]string
			for i, ref := range []bool{false, true} {
				c := NewTargetCache(testTarget(), true)
				c.SetLimits(l)
				res := processWith(c, []byte(p), ref, scrapeTime)
				got[i] = fmt.Sprint(res.Err, sendOf(res))
			}
			if got[0] != got[1] {
				t.Errorf("payload %q, limits %+v:\nfast:      %s\nreference: %s", p, l, got[0], got[1])
			}
		}
	}
}

// A new series whose label part (the text from '{') a series built earlier
// in the scrape had is built from that one's run (runmemo.go). Over the
// churn payloads of the 1.35 capture (a first scrape, then a third of the
// pods replaced at each, their namespaces relabelled half way), every
// series sent has the labels, and every scrape the counts, of a cache that
// builds each series from its own labels (the memo is off under label
// limits, here too high to drop anything) — and the memo served most new
// series.
func TestRunMemoAgainstFullBuild(t *testing.T) {
	body := readCapture(t, captures[0])
	bodies := churnPayloads(t, body, 3, 6)
	memo, full := NewTargetCache(testTarget(), false), NewTargetCache(testTarget(), false)
	full.SetLimits(Limits{LabelLimit: 1000})
	now := scrapeTime
	var first *Result
	for k := range 12 {
		ix := testIndex(1, baseTeams)
		if k >= 6 {
			ix = testIndex(2, map[string]string{"kube-system": "platform-2", "scraper": "observability-2"})
		}
		now = now.Add(15 * time.Second)
		a := memo.Process(bodies[k%len(bodies)], "", now, time.Second, ix, nil)
		b := full.Process(bodies[k%len(bodies)], "", now, time.Second, ix, nil)
		if a.Err != nil || b.Err != nil {
			t.Fatalf("scrape %d: %v, %v", k, a.Err, b.Err)
		}
		if k == 0 {
			first = a
			// Every target's first scrape comes within one interval:
			// none keeps its memo table or list of created series.
			if memo.runs != nil || memo.created != nil {
				t.Fatalf("after the first scrape: memo table kept %v, created's room %d", memo.runs != nil, cap(memo.created))
			}
		}
		// A churning target keeps the memo's table and its list of
		// created series from scrape to scrape rather than grow them anew.
		if k > 0 && a.SeriesAdded >= runMemoKeep && (memo.runs == nil || cap(memo.created) < a.SeriesAdded) {
			t.Fatalf("scrape %d created %d series: memo table kept %v, created's room %d", k, a.SeriesAdded, memo.runs != nil, cap(memo.created))
		}
		if a.SeriesAdded != b.SeriesAdded || a.Stale != b.Stale || a.Enriched != b.Enriched || len(a.Send) != len(b.Send) {
			t.Fatalf("scrape %d: memo added %d, stale %d, enriched %d, sent %d; full build %d, %d, %d, %d", k,
				a.SeriesAdded, a.Stale, a.Enriched, len(a.Send), b.SeriesAdded, b.Stale, b.Enriched, len(b.Send))
		}
		for i := range a.Send {
			sa, sb := a.Send[i], b.Send[i]
			ea, eb := sa.Table.AppendEncoded(nil, sa.Ref), sb.Table.AppendEncoded(nil, sb.Ref)
			if !bytes.Equal(ea, eb) || sa.Ref.Valid() != sb.Ref.Valid() || sa.T != sb.T || math.Float64bits(sa.V) != math.Float64bits(sb.V) {
				t.Fatalf("scrape %d, sample %d: memo %q %v, full build %q %v", k, i, ea, sa, eb, sb)
			}
		}
	}
	if added := first.SeriesAdded; memo.memoBuilt < added/2 {
		t.Fatalf("the memo served %d series, fewer than half the first scrape's %d", memo.memoBuilt, added)
	}
	// A scrape that creates few series drops the memo's table: a target in
	// steady state keeps nothing of it.
	if res := memo.Process(bodies[11%len(bodies)], "", now.Add(15*time.Second), time.Second, testIndex(2, nil), nil); res.Err != nil || res.SeriesAdded != 0 || memo.runs != nil {
		t.Fatalf("a scrape with nothing new: err %v, %d added, memo table %v", res.Err, res.SeriesAdded, memo.runs != nil)
	}
}
