package relay

import (
	"testing"
	"time"
)

// benchLimits turns every limit and bound on, loose enough that the
// captures pass whole (their timestamps are years before scrapeTime): the
// cost of the checks, not of failing.
var benchLimits = Limits{SampleLimit: 1 << 20, LabelLimit: 64, LabelNameLengthLimit: 256, LabelValueLengthLimit: 4096,
	OutOfBoundsFuture: 100 * 365 * 24 * time.Hour, OutOfBoundsPast: 100 * 365 * 24 * time.Hour}

// BenchmarkLimits is BenchmarkProcess (steady state: sample limit and
// timestamp bounds per sample) and BenchmarkProcessCold (every series new:
// the label limits too) with the limits off and on.
func BenchmarkLimits(b *testing.B) {
	body := readCapture(b, captures[0])
	n := countSamples(body)
	for _, mode := range []struct {
		name   string
		limits Limits
	}{{"off", Limits{}}, {"on", benchLimits}} {
		b.Run("steady/"+mode.name, func(b *testing.B) {
			c := NewTargetCache(testTarget(), true)
			c.SetLimits(mode.limits)
			if res := c.Process(body, "", scrapeTime, time.Second, testIndex(1, baseTeams), nil); res.Err != nil || res.OutOfBounds.Past+res.OutOfBounds.Future > 0 {
				b.Fatalf("%v %+v", res.Err, res.OutOfBounds)
			}
			benchSteady(b, c, body, n)
		})
		b.Run("cold/"+mode.name, func(b *testing.B) {
			ix := testIndex(1, baseTeams)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				c := NewTargetCache(testTarget(), true)
				c.SetLimits(mode.limits)
				c.Process(body, "", scrapeTime, time.Second, ix, nil)
			}
			perSample(b, n)
		})
	}
}
