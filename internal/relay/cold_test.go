package relay

import (
	"fmt"
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
