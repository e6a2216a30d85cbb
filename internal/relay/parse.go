package relay

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unique"
	"unsafe"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

	"github.com/cespare/xxhash/v2"
	commonmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
)

// ParseError is a payload that does not parse; it names the line.
type ParseError struct {
	Line int
	Err  error
}

func (e *ParseError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *ParseError) Unwrap() error { return e.Err }

// parse reads entries from sc until it is exhausted (or, streaming, needs
// more of the payload).
func (c *TargetCache) parse(st *scrapeState, sc scrape.Scanner) error {
	nowMs, tv, res := st.nowMs, st.view, st.res
	// Targets write their series in the same order every time: predict
	// each from the previous scrape, so the text scanner need not look for
	// where its labels end (see TextScanner.sample).
	ts, _ := sc.(*scrape.TextScanner)
	pred := st.pred
	defer func() { st.pred = pred }()
	for {
		if ts != nil {
			ts.Predict(0, 0)
			if pred < len(c.prev) {
				p := c.entries.at(c.prev[pred])
				ts.Predict(p.rawLen.predict(), p.key)
			}
		}
		et, err := sc.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || err == scrape.ErrMore {
				break
			}
			return &ParseError{Line: sc.Line(), Err: err}
		}
		switch et {
		case scrape.EntryHelp:
			name, help := sc.Meta()
			st.curFam, st.curFamName = c.family(name)
			if help != c.families[st.curFam].Help {
				// Every kubelet writes the same texts: one copy of each
				// (unique), not one per target.
				help = unique.Make(help).Value()
				c.setFamily(st.curFam, func(f *view.Family) { f.Help = help })
			}
			continue
		case scrape.EntryType:
			name, typ := sc.Meta()
			st.curFam, st.curFamName = c.family(name)
			if typ != c.families[st.curFam].Type {
				c.setFamily(st.curFam, func(f *view.Family) { f.Type = typ })
			}
			continue
		}
		raw, t, hasTS, v := sc.Series()
		res.Scraped++
		if c.limits.SampleLimit > 0 && res.Scraped > c.limits.SampleLimit {
			if st.limitErr == nil {
				st.limitErr = &LimitError{Limit: LimitSample, Value: c.limits.SampleLimit}
			}
			continue // count the rest, as Prometheus does, but keep nothing of it
		}
		var ei uint32
		fresh := false // built just now, from the current scopes
		if ts != nil && ts.Predicted() {
			ei = c.prev[pred]
			pred++
		} else {
			h := xxhash.Sum64(raw)
			i, ok := c.index.get(h, &c.entries)
			if !ok || c.entries.at(i).rawLen != rawLenOf(len(raw)) {
				if i, err = c.newEntry(sc, raw, h, st.curFam, st.curFamName); err != nil {
					return &ParseError{Line: sc.Line(), Err: err}
				}
				if st := c.entries.at(i).enrich(); st != enrichRelabelDropped && st != enrichDropped {
					res.SeriesAdded++
				}
				fresh = true
			} else if e := c.entries.at(i); e.seen == c.iter-1 && e.pos() < len(c.prev) && c.prev[e.pos()] == i {
				pred = e.pos() + 1 // back in step with the previous scrape
			}
			ei = i
		}
		e := c.entries.at(ei)
		if e.ns != 0 && !fresh && c.scopes.list[e.ns].changedSince(e.seen, c.iter) {
			if err := c.recheck(sc, e, nowMs); err != nil {
				return &ParseError{Line: sc.Line(), Err: err}
			}
		}
		if e.enrich() == enrichRelabelDropped {
			e.seen = c.iter // not evicted: its relabeling is not run again
			res.Dropped++
			continue
		}
		if e.seen == c.iter {
			// The series again: Prometheus keeps the first sample and
			// counts the others (sample_duplicate_timestamp_total).
			if res.Duplicates++; res.Duplicates == 1 {
				res.FirstDuplicate = string(raw)
			}
			continue
		}
		if e.enrich() == enrichDropped {
			e.seen = c.iter // reported: not evicted
			c.notOnNode(res, e)
			continue
		}
		if hasTS && c.honorTS && (c.futureMs|c.pastMs) != 0 && c.outOfBounds(res, raw, t, nowMs) {
			continue // as if absent: a receiver would refuse it, and its batch
		}
		if len(c.selfClash) > 0 {
			c.givesSelf(st, ei)
		}
		e.sighted(len(c.cur))
		c.cur = append(c.cur, ei)
		e.seen = c.iter
		switch e.enrich() {
		case enrichHit:
			res.Enriched++
		case enrichUnknown:
			res.Unknown++
		case enrichNotOnNode:
			c.notOnNode(res, e)
		}
		viewT := t
		if !hasTS || !c.honorTS {
			t, viewT = nowMs, view.NoTimestamp
		}
		if e.fam != st.rangeFam || len(tv.Ranges) == 0 {
			tv.Ranges = append(tv.Ranges, view.FamilyRange{Family: e.fam, Start: len(tv.Samples)})
			st.rangeFam = e.fam
		}
		tv.AppendDT(e.ref, tv.DT(viewT), v)
		tv.Ranges[len(tv.Ranges)-1].End = len(tv.Samples)
		if t <= e.lastT {
			res.Skipped++ // the target repeated a timestamp: never send it twice
			continue
		}
		// e.lastT moves only once the whole payload parsed (commit): a
		// payload that fails half way sends nothing.
		c.send = append(c.send, model.Sample{Ref: e.ref, T: t, V: v})
	}
	return nil
}

// newEntry builds the enriched series of a raw series seen for the first time
// and returns its index in entries.
func (c *TargetCache) newEntry(sc scrape.Scanner, raw []byte, h uint64, curFam int32, curFamName string) (uint32, error) {
	rawLen := len(raw)
	var memoKeyOf uint64
	name, part, memo := []byte(nil), []byte(nil), false
	if _, text := sc.(*scrape.TextScanner); text {
		name, part, memo = c.memoPart(raw)
	}
	if memo {
		memoKeyOf = memoKey(part)
		if m, ok := c.runs[memoKeyOf]; ok && m.n == uint32(len(part)) {
			if i, ok := c.fromMemo(m, name, c.familyOf(unsafe.String(&name[0], len(name)), curFam, curFamName), h, rawLen); ok {
				c.addEntry(i, h)
				return i, nil
			}
		}
	}
	ls, err := c.scrapedLabels(sc, true)
	if err != nil {
		return 0, err
	}
	fam := c.familyOf(labelValue(ls, commonmodel.MetricNameLabel), curFam, curFamName)
	i := c.allocEntry()
	e := c.entries.at(i)
	// seen: not this scrape (the iteration counter wraps, 0 is no "never").
	*e = seriesEntry{key: h, rawLen: rawLenOf(rawLen), fam: fam, lastT: noTimestamp, seen: c.iter - 1, flags: liveBit}
	e.ns = c.scopes.intern(labelValue(ls, enrich.NamespaceLabel), labelValue(ls, PodLabel))
	c.build(e, ls)
	if memo && c.scrapedFast && c.nameFirst {
		c.remember(memoKeyOf, part, e)
	}
	c.addEntry(i, h)
	return i, nil
}

// familyOf is the family of a new series named name, met in family curFam.
func (c *TargetCache) familyOf(name string, curFam int32, curFamName string) int32 {
	if curFam >= 0 && belongsTo(name, curFamName, c.families[curFam].Type) {
		return curFam
	}
	fam, _ := c.family([]byte(name))
	return fam
}

// allocEntry returns a free entry slot.
func (c *TargetCache) allocEntry() uint32 {
	if n := len(c.free); n > 0 {
		i := c.free[n-1]
		c.free = c.free[:n-1]
		return i
	}
	return c.entries.add() // a new chunk at times, nothing copied (entries.go)
}

// addEntry indexes entry i, just built, under h.
func (c *TargetCache) addEntry(i uint32, h uint64) {
	c.markSelfClash(i, c.entries.at(i).ref)
	// On a 64-bit collision (same hash, other length) the new series takes
	// the index; the other is then found by prediction only.
	c.index.put(h, i, &c.entries)
	c.created = append(c.created, i)
}

// recheck rebuilds a series whose own scope (its namespace, its pod, its
// pod-on-node verdict) changed since the entry was built.
func (c *TargetCache) recheck(sc scrape.Scanner, e *seriesEntry, nowMs int64) error {
	ls, err := c.scrapedLabels(sc, false)
	if err != nil {
		return err
	}
	old := e.ref
	oldT := e.lastT
	c.build(e, ls)
	if old == e.ref {
		e.lastT = oldT
		return nil
	}
	// The series now has other labels (the namespace or pod was relabelled): the old
	// identity ends here, with a stale marker, so queries see it go at once.
	if oldT != noTimestamp && !e.stale() {
		st := staleTime(nowMs, oldT)
		c.send = append(c.send, model.Sample{Ref: old, T: st, V: math.Float64frombits(value.StaleNaN)})
		h, pod := tombKeys(c.labels.Table(), old)
		c.tombs.add(pod, h, st, nowMs+tombstoneTTL.Milliseconds())
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
	case c.lbls.Get(commonmodel.MetricNameLabel) == "":
		return fmt.Errorf("series %s: missing metric name (__name__ label)", c.lbls.String())
	case !c.lbls.IsValid(commonmodel.UTF8Validation):
		return fmt.Errorf("series %s: invalid metric name or label names", c.lbls.String())
	}
	if n, dup := c.lbls.HasDuplicateLabelNames(); dup {
		return fmt.Errorf("series %s: label name %q is not unique", c.lbls.String(), n)
	}
	return nil
}

// build enriches the scraped labels (scrapedLabels) of entry e.
func (c *TargetCache) build(e *seriesEntry, scraped []enrich.Label) {
	sc := &c.scopes.list[e.ns]
	e.setEnrich(sc.state)
	add := c.scopes.labels(sc)
	ls := c.builder.BuildFrom(scraped, c.target.Labels, add)
	c.nameFirst = len(ls) > 0 && ls[0].Name == commonmodel.MetricNameLabel
	if len(c.target.MetricRelabel) > 0 {
		var keep bool
		if ls, keep = c.relabel(ls); !keep {
			e.ref, e.lastT = model.SeriesRef{}, noTimestamp
			e.setEnrich(enrichRelabelDropped)
			return
		}
	}
	e.ref = c.labels.Intern(ls)
	c.builtPod = podKeyOf(ls)
	c.lookupTombstone(e, c.builtPod)
}

// lookupTombstone sets the last timestamp of entry e, just built, of pod key
// pod (tombs.go): none, or its tombstone's.
func (c *TargetCache) lookupTombstone(e *seriesEntry, pod uint64) {
	e.lastT = noTimestamp
	if g := c.tombs.group(pod); g != nil {
		if t, ok := g.find(c.labels.Hash(e.ref)); ok {
			e.lastT = t // came back: never send anything older than its stale marker
		}
	}
}

func (c *TargetCache) family(name []byte) (int32, string) {
	if i, ok := c.famIndex[string(name)]; ok {
		return i, c.families[i].Name
	}
	s := unique.Make(string(name)).Value() // one copy for every target (HELP)
	i := int32(len(c.families))
	c.families = append(c.families, view.Family{Name: s, Type: "untyped"})
	c.famIndex[s] = i
	return i, s
}

// setFamily changes a family's metadata copy-on-write: views already handed
// out keep the slice they were given. The slice is copied once a scrape at
// most, not once a family: a first scrape sets every family's HELP.
func (c *TargetCache) setFamily(i int32, f func(*view.Family)) {
	if c.famShared {
		fams := make([]view.Family, len(c.families), cap(c.families))
		copy(fams, c.families)
		c.families, c.famShared = fams, false
	}
	f(&c.families[i])
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
