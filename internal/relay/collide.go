package relay

import "github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

// markSelfClash records whether entry i's series is one of the target's
// own (up, scrape_duration_seconds, scrape_samples_scraped with the target
// labels): a payload that writes `up 1` would otherwise send a second
// sample of the relay's up series at the same timestamp, which a receiver
// refuses as a duplicate or out of order. As in Prometheus, whose report
// append of such a series fails as a duplicate, the payload's sample is
// kept and the relay's own is left out of that scrape.
func (c *TargetCache) markSelfClash(i uint32, ref model.SeriesRef) {
	delete(c.selfClash, i)
	for f, s := range c.self {
		if s == ref {
			if c.selfClash == nil {
				c.selfClash = map[uint32]int{}
			}
			c.selfClash[i] = f
		}
	}
}

// givesSelf notes that the scrape's payload gave entry ei, if it is one of
// the target's own series.
func (c *TargetCache) givesSelf(st *scrapeState, ei uint32) {
	if f, ok := c.selfClash[ei]; ok {
		st.selfGiven[f] = true
	}
}
