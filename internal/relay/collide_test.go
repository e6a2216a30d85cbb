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
		if res.Duplicates != 2 {
			t.Errorf("%d duplicates, want the payload's up and scrape_samples_scraped", res.Duplicates)
		}
		if up := res.View.Samples[len(res.View.Samples)-numSelfFamilies].V; up != 1 {
			t.Errorf("up = %v: the payload's up 0 overrode the relay's", up)
		}
		now = now.Add(time.Second)
	}
}
