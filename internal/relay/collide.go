package relay

import "github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

// markSelfClash records whether entry i's series is one of the target's
// own (up, scrape_duration_seconds, scrape_samples_scraped with the target
// labels): a payload that writes `up 1` would otherwise send a second
// sample of the relay's up series at the same timestamp, which a receiver
// refuses as a duplicate or out of order. The relay's own series wins; the
// payload's sample is counted as a duplicate, as Prometheus counts it.
func (c *TargetCache) markSelfClash(i uint32, ref model.SeriesRef) {
	delete(c.selfClash, i)
	for _, s := range c.self {
		if s == ref {
			if c.selfClash == nil {
				c.selfClash = map[uint32]bool{}
			}
			c.selfClash[i] = true
		}
	}
}
