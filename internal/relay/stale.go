package relay

import (
	"math"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

	"github.com/prometheus/prometheus/model/value"
)

// tombstoneTTL is how long the last timestamp of a series that went away is
// remembered, so that it never gets a sample older than its stale marker.
const tombstoneTTL = 10 * time.Minute

// evictAfter is how many scrapes a series may be absent before its entry goes.
// Its stale marker went at the first scrape without it, and a tombstone keeps
// its last timestamp once the entry is gone; what the entry saves is only
// rebuilding a series that comes back. Prometheus's scrape cache drops a
// series at the first successful scrape without it; this keeps it two (a
// series missing from one payload costs nothing), so a target replacing its
// pods holds two to four scrapes of the gone series, not eight to sixteen,
// and faults in no memory for them (the load test's churn profile: 10 of 30
// pods a node replaced at every scrape).
const evictAfter = 2

// sweepEvery is how often, in scrapes, the expired tombstones are dropped
// (the sweep goes over all of them) and the label table is compacted if much
// of it is garbage.
const sweepEvery = 8

// markStale writes a stale marker for every series of the previous scrape
// that the current one lacks (all of them when the scrape failed).
func (c *TargetCache) markStale(nowMs int64, failed bool) int {
	n := 0
	for _, i := range c.prev {
		e := c.entries.at(i)
		if (e.seen == c.iter && !failed) || e.stale() {
			continue
		}
		e.flags |= staleBit
		if e.lastT == noTimestamp {
			continue // never sent
		}
		st := staleTime(nowMs, e.lastT)
		e.lastT = st
		c.send = append(c.send, model.Sample{Ref: e.ref, T: st, V: math.Float64frombits(value.StaleNaN)})
		n++
	}
	if failed {
		c.cur = c.cur[:0]
	}
	return n
}

// MarkAllStale ends every series of the target (it went away): the stale
// markers to send.
func (c *TargetCache) MarkAllStale(now time.Time) []model.Sample {
	c.iter++
	c.send = c.send[:0]
	c.markStale(now.UnixMilli(), true)
	for _, s := range c.self {
		c.send = append(c.send, model.Sample{Ref: s, T: now.UnixMilli(), V: math.Float64frombits(value.StaleNaN)})
	}
	table := c.labels.Table()
	for i := range c.send {
		c.send[i].Table = table
	}
	return c.send
}

func (c *TargetCache) evict(now time.Time) {
	var table *model.LabelTable
	freed := 0
	nowMs := now.UnixMilli()
	expires := now.Add(tombstoneTTL).UnixMilli()
	for i, e := range c.entries.all() {
		if !e.live() || c.iter-e.seen <= evictAfter {
			continue
		}
		if e.lastT != noTimestamp {
			if table == nil {
				table = c.labels.Table()
			}
			h, pod := tombKeys(table, e.ref)
			c.tombs.add(pod, h, e.lastT, expires)
		}
		c.index.remove(e.key, i)
		c.scopes.release(e.ns)
		*e = seriesEntry{}
		c.free = append(c.free, i)
		freed++
	}
	if c.iter%sweepEvery == 0 {
		c.tombs.sweep(nowMs)
	}
	c.capTombstones()
	// The labels of the series gone are compacted away at the sweeps' pace
	// (a compaction interns every live series' labels again), or at once
	// for a target over its limits.
	if (c.iter%sweepEvery == 0 || c.overgrown()) && (c.labels.NeedsCompaction() || c.churned(freed)) {
		c.compactLabels()
	}
}

// compactLabels drops the labels of series that went away: a new table
// with only the live ones. Views and queued samples keep the old one.
func (c *TargetCache) compactLabels() {
	clear(c.runs) // their runs are renumbered
	c.labels.Compact(func(visit func(*model.SeriesRef)) {
		for i := range c.self {
			visit(&c.self[i])
		}
		for _, e := range c.entries.all() {
			// A series metric relabeling dropped has no labels to move.
			if e.live() && e.enrich() != enrichRelabelDropped {
				visit(&e.ref)
			}
		}
	})
}

// tombstoneAll returns the last timestamp of every series the cache knows.
func (c *TargetCache) tombstoneAll() *tombstones {
	out := &tombstones{}
	c.tombs.each(func(pod uint64, tb tomb) { out.add(pod, tb.h, tb.t, tb.expires) })
	table := c.labels.Table()
	for _, e := range c.entries.all() {
		if e.live() && e.lastT != noTimestamp {
			h, pod := tombKeys(table, e.ref)
			out.add(pod, h, e.lastT, 0)
		}
	}
	return out
}

// seed gives a new cache the tombstones of an earlier one of the same target.
func (c *TargetCache) seed(tombs *tombstones, expires time.Time) {
	if tombs == nil {
		return
	}
	tombs.each(func(pod uint64, tb tomb) { c.tombs.add(pod, tb.h, tb.t, expires.UnixMilli()) })
}

// staleTime is when a stale marker goes: now, unless the series already has
// a sample that late (a target timestamp in the future), then just after it.
func staleTime(nowMs, lastT int64) int64 {
	if nowMs > lastT {
		return nowMs
	}
	return lastT + 1
}
