package relay

import "github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"

// trimAfterFirstScrape gives back what the first scrape left unused: the
// room in the cache entries' last chunk and what append left in the label
// table (up to a quarter of it): a target's series barely change after it,
// so the spare room would be kept for the life of the target.
//
// The scrape's view and order (its samples, its entries in order), which a
// streamed payload grew by append, are trimmed too, to a sixteenth of room
// for the target to grow: the view is the one published, and both go from
// target to target through the manager's free lists.
func (c *TargetCache) trimAfterFirstScrape(tv *view.TargetView) {
	c.trimmed = true
	c.entries.trim()
	tv.Samples = trimToRoom(tv.Samples)
	c.cur = trimToRoom(c.cur)
	c.labels.Trim()
}

// trimToRoom returns s, or a copy of it with roomFor(len(s)) capacity if it
// has more room than that.
func trimToRoom[S ~[]E, E any](s S) S {
	if n := len(s); cap(s) > roomFor(n) {
		return append(make(S, 0, roomFor(n)), s...)
	}
	return s
}
