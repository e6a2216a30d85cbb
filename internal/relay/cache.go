package relay

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
)

// Families every target reports about itself, as Prometheus does for each scrape.
const (
	famUp = iota
	famDuration
	famSamplesScraped
	famPostRelabel
	famSeriesAdded
	numSelfFamilies
)

var selfFamilies = [numSelfFamilies]view.Family{
	{Name: "up", Type: "gauge", Help: "1 if the target was scraped and parsed, 0 otherwise."},
	{Name: "scrape_duration_seconds", Type: "gauge", Help: "Duration of the scrape."},
	{Name: "scrape_samples_scraped", Type: "gauge", Help: "The number of samples the target exposed."},
	{Name: "scrape_samples_post_metric_relabeling", Type: "gauge", Help: "The number of samples remaining after metric relabeling was applied."},
	{Name: "scrape_series_added", Type: "gauge", Help: "The approximate number of new series in this scrape."},
}

// Result is what one scrape produced.
type Result struct {
	View *view.TargetView
	// Send holds the samples for remote write: new samples and stale markers.
	// It is reused by the next scrape of the same target; consumers copy it.
	Send []model.Sample
	// Err is set when the scrape or the parse failed; View then holds only
	// the target's own series (up == 0) and Send the stale markers.
	Err      error
	Duration time.Duration // fetch + parse + enrich
	Scraped  int           // samples in the payload
	Stale    int           // stale markers in Send
	Skipped  int           // samples not sent again because their timestamp did not move
	Enriched int           // samples that got labels from their Namespace
	Unknown  int           // samples whose namespace is not (yet) in the index
	// Duplicates counts samples of a series the payload had already given
	// (dropped, as Prometheus's scrape drops them); FirstDuplicate is the
	// first such series, as written, for the log.
	Duplicates     int
	FirstDuplicate string
	// NotOnNode counts samples of series naming a pod the apiserver does
	// not place on the scraped node (pod-on-node check); FirstNotOnNode is
	// the first such namespace/pod, for the log.
	NotOnNode      int
	FirstNotOnNode string
	// Dropped counts samples metric relabeling dropped; SeriesAdded the
	// series kept that the target's cache did not know (Prometheus's
	// scrape_series_added).
	Dropped     int
	SeriesAdded int
	// OutOfBounds counts the samples dropped for their timestamp (Limits).
	OutOfBounds OutOfBounds
	ownShown    int // the target's own samples at the end of View.Samples
}

type enrichState uint8

const (
	enrichNone enrichState = iota // no namespace label
	enrichHit
	enrichUnknown
	enrichNotOnNode // pod-on-node check failed: plain
	enrichDropped   // pod-on-node check failed: dropped
	// enrichRelabelDropped: metric relabeling dropped the series. The entry
	// stays so that the series costs a hash lookup per scrape and no more;
	// it has no labels (ref) and is never in cur or prev.
	enrichRelabelDropped
)

// seriesEntry is the cache entry of one raw series of one target. Entries are
// owned by the target's scrape goroutine; only their labels escape, as
// references into the target's LabelTable.
type seriesEntry struct {
	// An entry holds no pointer and fits 40 bytes (entry_test.go): there is
	// one per series, millions of them at 500 nodes, in one slice the
	// garbage collector need not scan.
	key   uint64 // xxhash of the raw series bytes, the cache key
	lastT int64  // last timestamp handed to remote write
	ref   model.SeriesRef
	fam   int32
	ns    uint32 // index in TargetCache.scopes; 0: no namespace label
	// flags holds the index in the scrape it was last seen in
	// (TargetCache.cur), its enrichState, stale and live (entry.go).
	flags uint32
	// seen is the scrape iteration the series was last seen in, modulo
	// 2^16 as TargetCache.iter: eviction removes every entry absent for
	// more than 2 × evictAfter scrapes, so no live entry's age wraps. It
	// also tells whether its scope changed since (scope.changedSince).
	seen   uint16
	rawLen rawLen // guards the 64-bit hash key against collisions
}

const noTimestamp = math.MinInt64

// TargetCache keeps, for one target, every series it exposed: raw bytes ->
// enriched, encoded series, the last timestamp sent, and what is needed to
// write stale markers. It is what makes the steady state allocation-free:
// a known series costs a hash and a map lookup.
type TargetCache struct {
	target         *scrape.Target
	honorTS        bool
	entries        entryStore // entries.go
	index          entryIndex // raw series hash -> entries
	free           []uint32   // entries slots to reuse
	iter           uint16     // scrapes, modulo 2^16 (seriesEntry.seen)
	families       []view.Family
	famShared      bool // families was handed to a view (setFamily)
	famIndex       map[string]int32
	cur, prev      []uint32   // entries of this and the last scrape, in order
	tombs          tombstones // tombs.go
	scopes         scopeTable
	labels         *model.LabelInterner
	builder        enrich.Builder
	lbls           labels.Labels
	scraped        []enrich.Label  // scrapedLabels' result (cold.go)
	aliased        bool            // scratch space points into the payload (release)
	lb             *labels.Builder // checkLabels' scratch
	rb             *labels.Builder // relabel's scratch
	rsb            labels.ScratchBuilder
	rscratch       []enrich.Label
	relabelRuns    int // series relabelled, for tests
	self           [numSelfFamilies]model.SeriesRef
	send           []model.Sample
	lastViewLen    int
	lastBodySize   int // the target's last payload, to size the next buffer
	spare          *view.TargetView
	lastRangeCount int
	limits         Limits // see limits.go
	futureMs       int64
	pastMs         int64
	lastBoundsLog  time.Time
	selfClash      map[uint32]int     // entries whose series is one of self (collide.go)
	created        []uint32           // entries this scrape created (dropCreated)
	trimmed        bool               // trimAfterFirstScrape ran
	runs           map[uint64]runMemo // this scrape's label parts (runmemo.go)
	scrapedFast    bool               // scrapedLabels took the fast path
	nameFirst      bool               // build's set had __name__ first
	memoBuilt      int                // series built from the memo, for tests
	builtPod       uint64             // build's pod key (tombs.go), for remember
}

// NewTargetCache returns the cache of one target. honorTimestamps keeps the
// target's own timestamps, as Prometheus's honor_timestamps does. external
// labels are added to every series that lacks a label of their name.
func NewTargetCache(t *scrape.Target, honorTimestamps bool, external ...enrich.Label) *TargetCache {
	c := &TargetCache{
		target:   t,
		honorTS:  honorTimestamps,
		famIndex: make(map[string]int32),
		scopes:   newScopeTable(),
		labels:   model.NewLabelInterner(xxhash.Sum64String(t.Key)),
	}
	c.builder.External = external
	for i, f := range selfFamilies {
		c.families = append(c.families, f)
		c.famIndex[f.Name] = int32(i)
		ls := append([]enrich.Label{{Name: "__name__", Value: f.Name}}, t.Labels...)
		c.self[i] = c.labels.Intern(c.builder.SeriesOf(ls))
	}
	return c
}

// Process parses one payload and returns the scrape's result. now is the
// scrape time; ix the namespace snapshot to enrich from. A nil body with a
// non-nil fetchErr records a failed scrape.
func (c *TargetCache) Process(body []byte, contentType string, now time.Time, duration time.Duration, ix *enrich.NamespaceIndex, fetchErr error) *Result {
	st := c.begin(now, ix)
	err := fetchErr
	if err == nil && c.entries.len() == 0 {
		c.reserve(st, body) // a first scrape (cold.go)
	}
	if err == nil {
		if len(body) > 0 && body[len(body)-1] != '\n' {
			// Both parsers want a final newline; adding it here keeps every
			// slice they return inside body.
			body = append(body, '\n')
		}
		var sc scrape.Scanner
		if sc, err = scrape.NewScanner(body, contentType); err == nil {
			err = c.parse(st, sc)
		}
	}
	return c.end(st, duration, err)
}

// streamChunk is how much of a text payload ProcessStream reads before it
// parses what it has: small enough that the lines are still in the CPU's
// cache when they are parsed, large enough for few calls.
// A variable so that tests can cut payloads into chunks of a few bytes.
var streamChunk = 128 << 10

// ProcessStream is Process for a text-format payload read from r as it
// arrives: each chunk is parsed while it is still in the CPU's cache, and
// the whole payload is never held, only buf (grown if a line is longer).
// It returns the result and buf, to be reused. The scrape's duration runs
// from start until r is drained. An error from r fails the scrape.
func (c *TargetCache) ProcessStream(r io.Reader, start time.Time, ix *enrich.NamespaceIndex, buf []byte) (*Result, []byte) {
	if len(buf) < 2*streamChunk {
		buf = make([]byte, 2*streamChunk)
	}
	st := c.begin(start, ix)
	sc := scrape.NewTextScanner(nil)
	n := 0 // bytes in buf, the first ones an unfinished line
	var err error
	for {
		var rerr error
		for m := 0; n < len(buf) && m < streamChunk && rerr == nil; {
			var k int
			k, rerr = r.Read(buf[n:])
			n, m = n+k, m+k
		}
		final := rerr == io.EOF
		if rerr != nil && !final {
			err = rerr
			break
		}
		data := buf[:n]
		if final && n > 0 && data[n-1] != '\n' {
			buf = append(buf[:n], '\n')
			data = buf[:n+1]
		}
		sc.Reset(data, final)
		if err = c.parse(st, sc); err != nil || final {
			break
		}
		n = 0
		if !sc.Stopped() { // a NUL ended the payload: drain the rest unread
			n = copy(buf, sc.Unread()) // the unfinished line
		}
		if max := c.limits.maxLine(); max > 0 && n >= max {
			err = c.limits.lineTooLong() // fail before buffering a line no series could fit in
			break
		}
		if n == len(buf) {
			buf = append(buf, make([]byte, len(buf))...) // a line longer than buf
		}
	}
	return c.end(st, time.Since(start), err), buf
}

// scrapeState is what one scrape carries from chunk to chunk.
type scrapeState struct {
	nowMs      int64
	ix         *enrich.NamespaceIndex
	view       *view.TargetView
	res        *Result
	gen        uint64
	curFam     int32
	curFamName string
	rangeFam   int32
	pred       int // index in prev of the series expected next
	// limitErr is the sample limit exceeded: the scrape fails, but the
	// rest of the payload is still counted, as Prometheus does.
	limitErr *LimitError
	// selfGiven: the payload wrote the target's own series of this family
	// (collide.go).
	selfGiven [numSelfFamilies]bool
}

// begin starts a scrape at now with the namespace snapshot ix.
func (c *TargetCache) begin(now time.Time, ix *enrich.NamespaceIndex) *scrapeState {
	c.iter++
	c.send = c.send[:0]
	if n := len(c.prev); n > 0 && !fits(cap(c.cur), n) {
		// None, or one from the manager's free list that another target
		// used: one of this target's size.
		c.cur = make([]uint32, 0, roomFor(n))
	}
	c.cur = c.cur[:0]
	c.created = c.created[:0]
	need := c.lastViewLen + numSelfFamilies
	tv := c.spare
	if tv != nil {
		// A view nobody reads any more: reuse it and its buffers rather
		// than allocate a sample slice per scrape. One that another target
		// used may not fit this one: it would keep the difference for as
		// long as it is published.
		c.spare = nil
		if c.lastViewLen > 0 && !fits(cap(tv.Samples), need) {
			tv.Samples = make([]view.ViewSample, 0, roomFor(need))
		}
	} else {
		tv = &view.TargetView{
			Samples: make([]view.ViewSample, 0, roomFor(need)),
			Ranges:  make([]view.FamilyRange, 0, c.lastRangeCount+numSelfFamilies),
		}
	}
	tv.Target = c.target
	tv.Reset()
	return &scrapeState{nowMs: now.UnixMilli(), ix: ix, view: tv, res: &Result{}, gen: c.scopes.begin(ix, now, c.iter),
		curFam: -1, rangeFam: -1}
}

// end finishes a scrape: err, if not nil, failed it (nothing of the payload
// is sent, every series goes stale).
func (c *TargetCache) end(st *scrapeState, duration time.Duration, err error) *Result {
	res, tv, nowMs := st.res, st.view, st.nowMs
	if err == nil && st.limitErr != nil {
		st.limitErr.Detail = fmt.Sprintf("the scrape has %d samples", res.Scraped)
		err = st.limitErr
	}
	res.Err, res.Duration = err, duration
	if res.Err == nil {
		c.commit(tv, nowMs)
	} else {
		tv.Reset()
		c.send = c.send[:0]
		if !isLimit(err) { // over a limit, Prometheus still reports what was scraped
			res.Scraped = 0
		}
		res.Skipped, res.Enriched, res.Unknown, res.Dropped, res.SeriesAdded = 0, 0, 0, 0, 0
		res.OutOfBounds = OutOfBounds{}
		c.dropCreated()
	}
	res.Stale = c.markStale(nowMs, res.Err != nil)

	up := 1.0
	if res.Err != nil {
		up = 0
	}
	post := float64(res.Scraped - res.Dropped - res.Duplicates)
	if res.Err != nil {
		post = 0
	}
	for i, v := range [numSelfFamilies]float64{up, duration.Seconds(), float64(res.Scraped), post, float64(res.SeriesAdded)} {
		if st.selfGiven[i] && res.Err == nil {
			continue // the payload's sample of this series stands (collide.go)
		}
		res.ownShown++
		s := c.self[i]
		tv.Ranges = append(tv.Ranges, view.FamilyRange{Family: int32(i), Start: len(tv.Samples), End: len(tv.Samples) + 1})
		tv.Append(s, view.NoTimestamp, v)
		c.send = append(c.send, model.Sample{Ref: s, T: nowMs, V: v})
	}
	first := res.Err == nil && !c.trimmed
	if first {
		c.trimAfterFirstScrape(tv)
	}
	// Every label the samples refer to is in the table now: one snapshot
	// serves them all, and the view.
	table := c.labels.Table()
	for i := range c.send {
		c.send[i].Table = table
	}
	tv.Table = table
	tv.Families = c.families[:len(c.families):len(c.families)]
	c.famShared = true
	c.lastViewLen, c.lastRangeCount = len(tv.Samples), len(tv.Ranges)
	c.prev, c.cur = c.cur, c.prev
	if c.iter%evictAfter == 0 || c.overgrown() {
		c.evict(time.UnixMilli(nowMs))
	}
	c.endMemo(first) // before created goes: it keeps the memo's table by it
	if cap(c.created) > 1024 && (first || 4*len(c.created) < cap(c.created)) {
		// The first scrape creates every series: do not keep a slot per
		// series until the next scrape, for the few it creates (4 bytes a
		// series for a whole interval, when the first scrapes of every
		// target raise the heap to its peak). A target under pod churn
		// creates as many every scrape: it keeps them.
		c.created = nil
	}
	res.View = tv
	res.Send = c.send
	c.release()
	return res
}

// fits reports whether a buffer of capacity c suits a scrape expected to
// need n: large enough not to grow by append (by a quarter, kept as slack),
// not much larger (the manager's free lists pass buffers between targets:
// a kube-state-metrics view would otherwise end up under a kubelet's few
// thousand series).
func fits(c, n int) bool { return c >= n && c <= n+n/4 }

// roomFor is the capacity a view or order buffer of a target expected to
// need n gets: a sixteenth of room for the target to grow.
func roomFor(n int) int { return n + n/16 }

// commit records, once a payload parsed whole, the timestamps its samples
// were sent with; tv holds the view's samples, in c.cur order.
func (c *TargetCache) commit(tv *view.TargetView, nowMs int64) {
	for i, ei := range c.cur {
		t := tv.T(i)
		if t == view.NoTimestamp {
			t = nowMs
		}
		if e := c.entries.at(ei); t > e.lastT {
			e.lastT = t
		}
	}
}

// Recycle hands back a view that was just replaced in the View store; if
// nobody is reading it, the next scrape reuses its buffers.
func (c *TargetCache) Recycle(old *view.TargetView) {
	if old != nil && !old.InUse() {
		c.spare = old
	}
}

// Len is the number of series the cache holds.
func (c *TargetCache) Len() int { return c.entries.len() - len(c.free) }
