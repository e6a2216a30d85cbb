package scrape

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/model/value"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/pkg/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/pkg/remotewrite"
)

// Families every target reports about itself, as Prometheus does for each scrape.
const (
	famUp = iota
	famDuration
	famSamplesScraped
	numSelfFamilies
)

var selfFamilies = [numSelfFamilies]Family{
	{Name: "up", Type: "gauge", Help: "1 if the target was scraped and parsed, 0 otherwise."},
	{Name: "scrape_duration_seconds", Type: "gauge", Help: "Duration of the scrape."},
	{Name: "scrape_samples_scraped", Type: "gauge", Help: "The number of samples the target exposed."},
}

// Family is the metadata of one metric family as the target exposed it.
type Family struct {
	Name, Type, Help string
}

// ViewSample is one sample of the latest scrape, as the /metrics view shows it.
// It holds no pointer (its labels are in TargetView.Table): 24 bytes.
type ViewSample struct {
	Ref remotewrite.SeriesRef
	T   int64 // the target's timestamp, or NoTimestamp
	V   float64
}

// NoTimestamp is ViewSample.T of a sample shown without a timestamp.
const NoTimestamp = math.MinInt64

// FamilyRange is a run of ViewSamples of one family.
type FamilyRange struct {
	Family     int32
	Start, End int
}

// TargetView is the immutable result of one scrape for the /metrics view.
type TargetView struct {
	Target   *Target
	Table    *remotewrite.LabelTable // the labels of Samples
	Families []Family                // indexed by FamilyRange.Family; never modified in place
	Samples  []ViewSample
	Ranges   []FamilyRange
	readers  atomic.Int32 // renders in progress (View.Targets .. View.Release)
}

// Result is what one scrape produced.
type Result struct {
	View *TargetView
	// Send holds the samples for remote write: new samples and stale markers.
	// It is reused by the next scrape of the same target; consumers copy it.
	Send []remotewrite.Sample
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
}

type enrichState uint8

const (
	enrichNone enrichState = iota // no namespace label
	enrichHit
	enrichUnknown
)

// seriesEntry is the cache entry of one raw series of one target. Entries are
// owned by the target's scrape goroutine; only their labels escape, as
// references into the target's LabelTable.
type seriesEntry struct {
	// An entry holds no pointer and fits 64 bytes: there is one per series,
	// hundreds of thousands of them, in one slice the garbage collector
	// need not scan.
	key     uint64 // xxhash of the raw series bytes, the cache key
	nsVer   uint64 // NamespaceInfo.Version the series was built with
	gen     uint64 // index generation last checked
	lastT   int64  // last timestamp handed to remote write
	ref     remotewrite.SeriesRef
	rawLen  int32  // guards the 64-bit hash key against collisions
	pos     int32  // index in the scrape it was last seen in (TargetCache.cur)
	seen    uint32 // scrape iteration the series was last seen in
	fam     int32
	ns      uint32 // index in TargetCache.nsNames; 0: no namespace label
	enrich  enrichState
	stale   bool
	nsFound bool
	live    bool // the slot holds a series (evicted slots are reused)
}

const noTimestamp = math.MinInt64

// tombstoneTTL is how long the last timestamp of a series that went away is
// remembered, so that it never gets a sample older than its stale marker.
const tombstoneTTL = 10 * time.Minute

// evictAfter is how many scrapes a series may be absent before its entry goes.
const evictAfter = 8

// TargetCache keeps, for one target, every series it exposed: raw bytes ->
// enriched, encoded series, the last timestamp sent, and what is needed to
// write stale markers. It is what makes the steady state allocation-free:
// a known series costs a hash and a map lookup.
type TargetCache struct {
	target         *Target
	honorTS        bool
	entries        []seriesEntry
	index          entryIndex // raw series hash -> entries
	free           []uint32   // entries slots to reuse
	iter           uint32
	families       []Family
	famIndex       map[string]int32
	cur, prev      []uint32 // entries of this and the last scrape, in order
	tombstones     map[uint64]tombstone
	nsNames        []string // [0] is "": no namespace
	nsIndex        map[string]uint32
	labels         *remotewrite.LabelInterner
	builder        enrich.Builder
	lbls           labels.Labels
	lb             *labels.Builder // checkLabels' scratch
	self           [numSelfFamilies]remotewrite.SeriesRef
	send           []remotewrite.Sample
	lastViewLen    int
	lastBodySize   int // the target's last payload, to size the next buffer
	spare          *TargetView
	lastRangeCount int
}

type tombstone struct {
	t       int64
	expires time.Time
}

// NewTargetCache returns the cache of one target. honorTimestamps keeps the
// target's own timestamps, as Prometheus's honor_timestamps does. external
// labels are added to every series that lacks a label of their name.
func NewTargetCache(t *Target, honorTimestamps bool, external ...enrich.Label) *TargetCache {
	c := &TargetCache{
		target:     t,
		honorTS:    honorTimestamps,
		famIndex:   make(map[string]int32),
		tombstones: make(map[uint64]tombstone),
		nsNames:    []string{""},
		nsIndex:    make(map[string]uint32),
		labels:     remotewrite.NewLabelInterner(xxhash.Sum64String(t.Key)),
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

// ParseError is a payload that does not parse; it names the line.
type ParseError struct {
	Line int
	Err  error
}

func (e *ParseError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *ParseError) Unwrap() error { return e.Err }

// Process parses one payload and returns the scrape's result. now is the
// scrape time; ix the namespace snapshot to enrich from. A nil body with a
// non-nil fetchErr records a failed scrape.
func (c *TargetCache) Process(body []byte, contentType string, now time.Time, duration time.Duration, ix *enrich.NamespaceIndex, fetchErr error) *Result {
	st := c.begin(now, ix)
	err := fetchErr
	if err == nil {
		if len(body) > 0 && body[len(body)-1] != '\n' {
			// Both parsers want a final newline; adding it here keeps every
			// slice they return inside body.
			body = append(body, '\n')
		}
		var sc scanner
		if sc, err = newScanner(body, contentType); err == nil {
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
	sc := newTextScanner(nil)
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
		sc.b, sc.pos, sc.final = data, 0, final
		if err = c.parse(st, sc); err != nil || final {
			break
		}
		n = 0
		if !sc.stopped { // a NUL ended the payload: drain the rest unread
			n = copy(buf, data[sc.pos:]) // the unfinished line
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
	view       *TargetView
	res        *Result
	gen        uint64
	curFam     int32
	curFamName string
	rangeFam   int32
	pred       int // index in prev of the series expected next
}

// begin starts a scrape at now with the namespace snapshot ix.
func (c *TargetCache) begin(now time.Time, ix *enrich.NamespaceIndex) *scrapeState {
	c.iter++
	c.send = c.send[:0]
	c.cur = c.cur[:0]
	view := &TargetView{Target: c.target}
	if sp := c.spare; sp != nil {
		// A view nobody reads any more: reuse its buffers rather than
		// allocate a sample slice per scrape.
		view.Samples, view.Ranges = sp.Samples[:0], sp.Ranges[:0]
		c.spare = nil
	} else {
		view.Samples = make([]ViewSample, 0, c.lastViewLen+numSelfFamilies)
		view.Ranges = make([]FamilyRange, 0, c.lastRangeCount+numSelfFamilies)
	}
	return &scrapeState{nowMs: now.UnixMilli(), ix: ix, view: view, res: &Result{}, gen: ix.Generation(),
		curFam: -1, rangeFam: -1}
}

// end finishes a scrape: err, if not nil, failed it (nothing of the payload
// is sent, every series goes stale).
func (c *TargetCache) end(st *scrapeState, duration time.Duration, err error) *Result {
	res, view, nowMs := st.res, st.view, st.nowMs
	res.Err, res.Duration = err, duration
	if res.Err == nil {
		c.commit(view.Samples, nowMs)
	} else {
		view.Samples, view.Ranges = view.Samples[:0], view.Ranges[:0]
		c.send = c.send[:0]
		res.Scraped, res.Skipped, res.Enriched, res.Unknown = 0, 0, 0, 0
	}
	res.Stale = c.markStale(nowMs, res.Err != nil)

	up := 1.0
	if res.Err != nil {
		up = 0
	}
	for i, v := range [numSelfFamilies]float64{up, duration.Seconds(), float64(res.Scraped)} {
		s := c.self[i]
		view.Ranges = append(view.Ranges, FamilyRange{Family: int32(i), Start: len(view.Samples), End: len(view.Samples) + 1})
		view.Samples = append(view.Samples, ViewSample{Ref: s, T: NoTimestamp, V: v})
		c.send = append(c.send, remotewrite.Sample{Ref: s, T: nowMs, V: v})
	}
	// Every label the samples refer to is in the table now: one snapshot
	// serves them all, and the view.
	table := c.labels.Table()
	for i := range c.send {
		c.send[i].Table = table
	}
	view.Table = table
	view.Families = c.families[:len(c.families):len(c.families)]
	c.lastViewLen, c.lastRangeCount = len(view.Samples), len(view.Ranges)
	c.prev, c.cur = c.cur, c.prev
	if c.iter%evictAfter == 0 {
		c.evict(time.UnixMilli(nowMs))
	}
	res.View = view
	res.Send = c.send
	return res
}

// parse reads entries from sc until it is exhausted (or, streaming, needs
// more of the payload).
func (c *TargetCache) parse(st *scrapeState, sc scanner) error {
	ix, nowMs, view, res := st.ix, st.nowMs, st.view, st.res
	gen := st.gen
	// Targets write their series in the same order every time: predict
	// each from the previous scrape, so the text scanner need not look for
	// where its labels end (see textScanner.sample).
	ts, _ := sc.(*textScanner)
	pred := st.pred
	defer func() { st.pred = pred }()
	for {
		if ts != nil {
			ts.predLen = 0
			if pred < len(c.prev) {
				p := &c.entries[c.prev[pred]]
				ts.predLen, ts.predKey = int(p.rawLen), p.key
			}
		}
		et, err := sc.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || err == errMore {
				break
			}
			return &ParseError{Line: sc.Line(), Err: err}
		}
		switch et {
		case entryHelp:
			name, help := sc.Meta()
			st.curFam, st.curFamName = c.family(name)
			if help != c.families[st.curFam].Help {
				help = strings.Clone(help)
				c.setFamily(st.curFam, func(f *Family) { f.Help = help })
			}
			continue
		case entryType:
			name, typ := sc.Meta()
			st.curFam, st.curFamName = c.family(name)
			if typ != c.families[st.curFam].Type {
				c.setFamily(st.curFam, func(f *Family) { f.Type = typ })
			}
			continue
		}
		raw, t, hasTS, v := sc.Series()
		res.Scraped++
		var ei uint32
		if ts != nil && ts.predicted {
			ei = c.prev[pred]
			pred++
		} else {
			h := xxhash.Sum64(raw)
			i, ok := c.index.get(h, c.entries)
			if !ok || int(c.entries[i].rawLen) != len(raw) {
				if i, err = c.newEntry(sc, h, len(raw), st.curFam, st.curFamName, ix); err != nil {
					return &ParseError{Line: sc.Line(), Err: err}
				}
			} else if e := &c.entries[i]; e.seen == c.iter-1 && int(e.pos) < len(c.prev) && c.prev[e.pos] == i {
				pred = int(e.pos) + 1 // back in step with the previous scrape
			}
			ei = i
		}
		e := &c.entries[ei]
		if e.gen != gen {
			if err := c.recheck(sc, e, ix, nowMs); err != nil {
				return &ParseError{Line: sc.Line(), Err: err}
			}
		}
		if e.seen == c.iter {
			// The series again: Prometheus keeps the first sample and
			// counts the others (sample_duplicate_timestamp_total).
			if res.Duplicates++; res.Duplicates == 1 {
				res.FirstDuplicate = string(raw)
			}
			continue
		}
		e.pos = int32(len(c.cur))
		c.cur = append(c.cur, ei)
		e.seen = c.iter
		e.stale = false
		switch e.enrich {
		case enrichHit:
			res.Enriched++
		case enrichUnknown:
			res.Unknown++
		}
		viewT := t
		if !hasTS || !c.honorTS {
			t, viewT = nowMs, NoTimestamp
		}
		if e.fam != st.rangeFam || len(view.Ranges) == 0 {
			view.Ranges = append(view.Ranges, FamilyRange{Family: e.fam, Start: len(view.Samples)})
			st.rangeFam = e.fam
		}
		view.Samples = append(view.Samples, ViewSample{Ref: e.ref, T: viewT, V: v})
		view.Ranges[len(view.Ranges)-1].End = len(view.Samples)
		if t <= e.lastT {
			res.Skipped++ // the target repeated a timestamp: never send it twice
			continue
		}
		// e.lastT moves only once the whole payload parsed (commit): a
		// payload that fails half way sends nothing.
		c.send = append(c.send, remotewrite.Sample{Ref: e.ref, T: t, V: v})
	}
	return nil
}

// newEntry builds the enriched series of a raw series seen for the first time
// and returns its index in entries.
func (c *TargetCache) newEntry(sc scanner, h uint64, rawLen int, curFam int32, curFamName string, ix *enrich.NamespaceIndex) (uint32, error) {
	if err := sc.Labels(&c.lbls); err != nil {
		return 0, err
	}
	if err := c.checkLabels(); err != nil {
		return 0, err
	}
	name := c.lbls.Get(model.MetricNameLabel)
	fam := curFam
	if curFam < 0 || !belongsTo(name, curFamName, c.families[curFam].Type) {
		fam, _ = c.family([]byte(name))
	}
	var i uint32
	if n := len(c.free); n > 0 {
		i, c.free = c.free[n-1], c.free[:n-1]
	} else {
		i = uint32(len(c.entries))
		c.entries = append(c.entries, seriesEntry{})
	}
	e := &c.entries[i]
	*e = seriesEntry{key: h, rawLen: int32(rawLen), fam: fam, lastT: noTimestamp, gen: ix.Generation(), live: true}
	e.ns = c.internNS(c.lbls.Get(enrich.NamespaceLabel))
	c.build(e, ix)
	// On a 64-bit collision (same hash, other length) the new series takes
	// the index; the other is then found by prediction only.
	c.index.put(h, i, c.entries)
	return i, nil
}

// recheck runs when the namespace index changed since the entry was built:
// only a change to this series' own namespace rebuilds it.
func (c *TargetCache) recheck(sc scanner, e *seriesEntry, ix *enrich.NamespaceIndex, nowMs int64) error {
	e.gen = ix.Generation()
	if e.ns == 0 {
		return nil
	}
	info, ok := ix.Lookup(c.nsNames[e.ns])
	if ok == e.nsFound && info.Version == e.nsVer {
		return nil
	}
	if err := sc.Labels(&c.lbls); err != nil {
		return err
	}
	if err := c.checkLabels(); err != nil {
		return err
	}
	old := e.ref
	oldT := e.lastT
	c.build(e, ix)
	if old == e.ref {
		e.lastT = oldT
		return nil
	}
	// The series now has other labels (the namespace was relabelled): the old
	// identity ends here, with a stale marker, so queries see it go at once.
	if oldT != noTimestamp && !e.stale {
		st := staleTime(nowMs, oldT)
		c.send = append(c.send, remotewrite.Sample{Ref: old, T: st, V: math.Float64frombits(value.StaleNaN)})
		c.tombstones[c.labels.Hash(old)] = tombstone{t: st, expires: time.UnixMilli(nowMs).Add(tombstoneTTL)}
	}
	return nil
}

// checkLabels applies to a new series what Prometheus's scrape does to the
// labels the parser gives: a label name with an empty value anywhere in
// the set is dropped (labels.Builder), and then the set must have a metric
// name, valid (UTF-8) names and no name twice, or the whole scrape fails
// (Prometheus: "invalid metric name or label names", or the TSDB's
// "label name is not unique"). The error names the series.
func (c *TargetCache) checkLabels() error {
	// Without closures over locals: this runs for every new series.
	if c.lb == nil {
		c.lb = labels.NewBuilder(labels.EmptyLabels())
	}
	c.lb.Reset(c.lbls)
	c.lbls = c.lb.Labels() // the same labels, unless some value was empty
	switch {
	case c.lbls.Get(model.MetricNameLabel) == "":
		return fmt.Errorf("series %s: missing metric name (__name__ label)", c.lbls.String())
	case !c.lbls.IsValid(model.UTF8Validation):
		return fmt.Errorf("series %s: invalid metric name or label names", c.lbls.String())
	}
	if n, dup := c.lbls.HasDuplicateLabelNames(); dup {
		return fmt.Errorf("series %s: label name %q is not unique", c.lbls.String(), n)
	}
	return nil
}

func (c *TargetCache) build(e *seriesEntry, ix *enrich.NamespaceIndex) {
	var add []enrich.Label
	e.enrich, e.nsVer, e.nsFound = enrichNone, 0, false
	if e.ns != 0 {
		info, ok := ix.Lookup(c.nsNames[e.ns])
		e.nsFound, e.nsVer = ok, info.Version
		if ok {
			e.enrich = enrichHit
			add = info.Labels
		} else {
			e.enrich = enrichUnknown
		}
	}
	e.ref = c.labels.Intern(c.builder.Build(c.lbls, c.target.Labels, add))
	e.lastT = noTimestamp
	if len(c.tombstones) == 0 {
		return // nothing to look up: no hash to compute
	}
	if ts, ok := c.tombstones[c.labels.Hash(e.ref)]; ok {
		e.lastT = ts.t // came back: never send anything older than its stale marker
	}
}

// markStale writes a stale marker for every series of the previous scrape
// that the current one lacks (all of them when the scrape failed).
func (c *TargetCache) markStale(nowMs int64, failed bool) int {
	n := 0
	for _, i := range c.prev {
		e := &c.entries[i]
		if (e.seen == c.iter && !failed) || e.stale {
			continue
		}
		e.stale = true
		if e.lastT == noTimestamp {
			continue // never sent
		}
		st := staleTime(nowMs, e.lastT)
		e.lastT = st
		c.send = append(c.send, remotewrite.Sample{Ref: e.ref, T: st, V: math.Float64frombits(value.StaleNaN)})
		n++
	}
	if failed {
		c.cur = c.cur[:0]
	}
	return n
}

// commit records, once a payload parsed whole, the timestamps its samples
// were sent with; samples holds the view's samples, in c.cur order.
func (c *TargetCache) commit(samples []ViewSample, nowMs int64) {
	for i, ei := range c.cur {
		t := samples[i].T
		if t == NoTimestamp {
			t = nowMs
		}
		if e := &c.entries[ei]; t > e.lastT {
			e.lastT = t
		}
	}
}

// MarkAllStale ends every series of the target (it went away): the stale
// markers to send.
func (c *TargetCache) MarkAllStale(now time.Time) []remotewrite.Sample {
	c.iter++
	c.send = c.send[:0]
	c.markStale(now.UnixMilli(), true)
	for _, s := range c.self {
		c.send = append(c.send, remotewrite.Sample{Ref: s, T: now.UnixMilli(), V: math.Float64frombits(value.StaleNaN)})
	}
	table := c.labels.Table()
	for i := range c.send {
		c.send[i].Table = table
	}
	return c.send
}

func (c *TargetCache) evict(now time.Time) {
	var table *remotewrite.LabelTable
	for i := range c.entries {
		e := &c.entries[i]
		if !e.live || c.iter-e.seen <= evictAfter {
			continue
		}
		if e.lastT != noTimestamp {
			if table == nil {
				table = c.labels.Table()
			}
			c.tombstones[table.Hash(e.ref)] = tombstone{t: e.lastT, expires: now.Add(tombstoneTTL)}
		}
		c.index.remove(e.key, uint32(i))
		*e = seriesEntry{}
		c.free = append(c.free, uint32(i))
	}
	for h, ts := range c.tombstones {
		if now.After(ts.expires) {
			delete(c.tombstones, h)
		}
	}
	if c.labels.NeedsCompaction() {
		// Series that went away left their labels behind: start a table
		// with only the live ones. Views and queued samples keep the old one.
		c.labels.Compact(func(visit func(*remotewrite.SeriesRef)) {
			for i := range c.self {
				visit(&c.self[i])
			}
			for i := range c.entries {
				if c.entries[i].live {
					visit(&c.entries[i].ref)
				}
			}
		})
	}
}

// Recycle hands back a view that was just replaced in the View store; if
// nobody is reading it, the next scrape reuses its buffers.
func (c *TargetCache) Recycle(old *TargetView) {
	if old != nil && old.readers.Load() == 0 {
		c.spare = old
	}
}

// tombstoneAll returns the last timestamp of every series the cache knows.
func (c *TargetCache) tombstoneAll() map[uint64]tombstone {
	out := make(map[uint64]tombstone, c.index.len()+len(c.tombstones))
	for h, ts := range c.tombstones {
		out[h] = ts
	}
	table := c.labels.Table()
	for i := range c.entries {
		if e := &c.entries[i]; e.live && e.lastT != noTimestamp {
			out[table.Hash(e.ref)] = tombstone{t: e.lastT}
		}
	}
	return out
}

// seed gives a new cache the tombstones of an earlier one of the same target.
func (c *TargetCache) seed(tombs map[uint64]tombstone, expires time.Time) {
	for h, ts := range tombs {
		c.tombstones[h] = tombstone{t: ts.t, expires: expires}
	}
}

// internNS returns the index of namespace ns in nsNames (0 for none).
func (c *TargetCache) internNS(ns string) uint32 {
	if ns == "" {
		return 0
	}
	if i, ok := c.nsIndex[ns]; ok {
		return i
	}
	s := strings.Clone(ns)
	i := uint32(len(c.nsNames))
	c.nsNames = append(c.nsNames, s)
	c.nsIndex[s] = i
	return i
}

// Len is the number of series the cache holds.
func (c *TargetCache) Len() int { return len(c.entries) - len(c.free) }

// staleTime is when a stale marker goes: now, unless the series already has
// a sample that late (a target timestamp in the future), then just after it.
func staleTime(nowMs, lastT int64) int64 {
	if nowMs > lastT {
		return nowMs
	}
	return lastT + 1
}

func (c *TargetCache) family(name []byte) (int32, string) {
	if i, ok := c.famIndex[string(name)]; ok {
		return i, c.families[i].Name
	}
	s := string(name)
	i := int32(len(c.families))
	c.families = append(c.families, Family{Name: s, Type: "untyped"})
	c.famIndex[s] = i
	return i, s
}

// setFamily changes a family's metadata copy-on-write: views already handed
// out keep the slice they were given.
func (c *TargetCache) setFamily(i int32, f func(*Family)) {
	fams := make([]Family, len(c.families), cap(c.families))
	copy(fams, c.families)
	f(&fams[i])
	c.families = fams
}

// belongsTo reports whether metric name is a sample of family fam.
func belongsTo(name, fam, typ string) bool {
	if name == fam {
		return true
	}
	if !strings.HasPrefix(name, fam) {
		return false
	}
	suffix := name[len(fam):]
	switch typ {
	case "histogram":
		return suffix == "_bucket" || suffix == "_sum" || suffix == "_count"
	case "summary":
		return suffix == "_sum" || suffix == "_count"
	case "counter":
		return suffix == "_total"
	}
	return false
}

func typeName(t model.MetricType) string {
	switch t {
	case model.MetricTypeCounter:
		return "counter"
	case model.MetricTypeGauge:
		return "gauge"
	case model.MetricTypeHistogram:
		return "histogram"
	case model.MetricTypeSummary:
		return "summary"
	}
	return "untyped"
}

// offsetOf is where sub, a slice of body, starts in body. The parser hands
// out subslices, so this needs no search.
func offsetOf(body, sub []byte) int {
	if cap(sub) > cap(body) {
		return -1
	}
	return cap(body) - cap(sub)
}

// lineAfter returns the 1-based number of the line after the one holding
// offset off: the parser fails on the line after the last entry it returned.
func lineAfter(body []byte, off int) int {
	if off < 0 {
		// Nothing parsed yet: the first non-empty line failed.
		return firstNonEmptyLine(body)
	}
	if off > len(body) {
		off = len(body)
	}
	line := bytes.Count(body[:off], []byte{'\n'}) + 1
	// Skip to the next non-empty line after the last good one.
	rest := body[off:]
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		return line
	}
	rest = rest[i+1:]
	line++
	for len(rest) > 0 && rest[0] == '\n' {
		rest = rest[1:]
		line++
	}
	return line
}

func firstNonEmptyLine(body []byte) int {
	line := 1
	for len(body) > 0 && body[0] == '\n' {
		body = body[1:]
		line++
	}
	return line
}

func newScanner(body []byte, contentType string) (scanner, error) {
	mt := contentType
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	switch strings.TrimSpace(mt) {
	case "application/openmetrics-text":
		return newParserScanner(textparse.NewOpenMetricsParser(body, labels.NewSymbolTable()), body), nil
	case "", "text/plain":
		return newTextScanner(body), nil
	}
	return nil, fmt.Errorf("unsupported content type %q: want text/plain (Prometheus text format 0.0.4) or application/openmetrics-text", contentType)
}
