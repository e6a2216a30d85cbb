package relay

import "github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"

// trimAfterFirstScrape gives back what append left unused in the arrays the
// first scrape filled (up to a quarter of the cache entries and of the label
// table, about 10 bytes a series): a target's series barely change after
// it, so the spare room would be kept for the life of the target.
//
// The scrape's view and order (its samples, its entries in order), which a
// streamed payload grew by append, are trimmed too, to a sixteenth of room
// for the target to grow: the view is the one published, and both go from
// target to target through the manager's free lists.
func (c *TargetCache) trimAfterFirstScrape(tv *view.TargetView) {
	c.trimmed = true
	c.entries.trim()
	if n := len(tv.Samples); cap(tv.Samples)-n > n/16 {
		tv.Samples = append(make([]view.ViewSample, 0, n+n/16), tv.Samples...)
	}
	if n := len(c.cur); cap(c.cur)-n > n/16 {
		c.cur = append(make([]uint32, 0, n+n/16), c.cur...)
	}
	c.labels.Trim()
}
