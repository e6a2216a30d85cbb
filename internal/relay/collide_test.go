package relay

import (
	"testing"
	"time"
)

// A payload that writes the target's own series (up, scrape_*) must not
// make the relay send two samples of one series at one timestamp.
func TestPayloadCannotDuplicateOwnSeries(t *testing.T) {
	c := NewTargetCache(testTarget(), true)
	now := scrapeTime
	for range 2 { // the second scrape takes the cached (predicted) path
		res := c.Process([]byte("up 0\nscrape_samples_scraped 99\nup{x=\"1\"} 1\nother 1\n"), "", now, time.Second, nil, nil)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		seen := map[string]int{}
		for _, s := range res.Send {
			seen[seriesString(s.Table, s.Ref)+"@"+time.UnixMilli(s.T).String()]++
		}
		for k, n := range seen {
			if n > 1 {
				t.Fatalf("sent %s %d times", k, n)
			}
		}
		// As in Prometheus, the payload's samples stand and the relay's
		// own of those series are left out.
		if res.ownShown != numSelfFamilies-2 {
			t.Errorf("%d own samples, want all but up and scrape_samples_scraped", res.ownShown)
		}
		var ups []float64
		for i, s := range res.View.Samples {
			if res.View.Ref(i) == c.self[famUp] {
				ups = append(ups, s.V())
			}
		}
		if len(ups) != 1 || ups[0] != 0 {
			t.Errorf("up shown as %v, want the payload's 0 once", ups)
		}
		now = now.Add(time.Second)
	}
}
