package view

import (
	"bytes"
	"io"
	"math"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	commonmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
)

// Family is the metadata of one metric family as the target exposed it.
type Family struct {
	Name, Type, Help string
}

// ViewSample is one sample of the latest scrape, as the /metrics view shows it.
// It holds no pointer (its labels are in TargetView.Table) and fits 16
// bytes: its timestamp is kept as an offset from the view's first
// (TargetView.T), and of its series' reference only the label run
// (model.SeriesRef.Rest): the metric name's symbol (First) is the same for
// every sample of a family but a histogram's or summary's, and the view
// keeps it once per run of samples that share it (TargetView.Ref). There
// is one per series.
type ViewSample struct {
	rest uint32 // model.SeriesRef.Rest
	dt   int32  // T - TargetView.base; noTS or farTS
	v    uint64 // math.Float64bits
}

// V is the sample's value.
func (s *ViewSample) V() float64 { return math.Float64frombits(s.v) }

// firstRun is the model.SeriesRef.First of the samples from index start on,
// up to the next run's start.
type firstRun struct {
	start, first uint32
}

// NoTimestamp is TargetView.T of a sample shown without a timestamp.
const NoTimestamp = math.MinInt64

// ViewSample.dt of a sample without a timestamp, and of one too far from
// the scrape time for 32 bits of milliseconds (24 days): its timestamp is
// in TargetView.far.
const (
	noTS  = math.MinInt32
	farTS = math.MinInt32 + 1
)

// farTime is the timestamp of the sample at index i, out of ViewSample.dt's
// range.
type farTime struct {
	i uint32
	t int64
}

// FamilyRange is a run of ViewSamples of one family.
type FamilyRange struct {
	Family     int32
	Start, End int
}

// TargetView is the immutable result of one scrape for the /metrics view.
type TargetView struct {
	Target   *scrape.Target
	Table    *model.LabelTable // the labels of Samples
	Families []Family          // indexed by FamilyRange.Family; never modified in place
	Samples  []ViewSample      // appended by Append; read T with T, the series with Ref
	Ranges   []FamilyRange
	base     int64        // ViewSample.dt's origin: the first sample's timestamp, or 0
	others   int          // samples whose dt is noTS or farTS
	far      []farTime    // by index, ascending
	firsts   []firstRun   // by start, ascending; the first starts at 0
	readers  atomic.Int32 // renders in progress (View.Targets .. View.Release)
}

// Reset empties tv, keeping its buffers.
func (tv *TargetView) Reset() {
	tv.Samples, tv.Ranges, tv.far, tv.firsts, tv.base, tv.others = tv.Samples[:0], tv.Ranges[:0], tv.far[:0], tv.firsts[:0], 0, 0
}

// Append adds a sample with timestamp t (NoTimestamp for none).
func (tv *TargetView) Append(ref model.SeriesRef, t int64, v float64) {
	tv.AppendDT(ref, tv.DT(t), v)
}

// AppendDT adds a sample of series ref with value v and timestamp offset
// dt (DT): Append, taken apart for a caller that works the timestamp out
// in a loop of its own.
func (tv *TargetView) AppendDT(ref model.SeriesRef, dt int32, v float64) {
	if n := len(tv.firsts); n == 0 || tv.firsts[n-1].first != ref.First {
		tv.firsts = append(tv.firsts, firstRun{start: uint32(len(tv.Samples)), first: ref.First})
	}
	tv.Samples = append(tv.Samples, ViewSample{rest: ref.Rest, dt: dt, v: math.Float64bits(v)})
}

// Ref is the series of sample i.
func (tv *TargetView) Ref(i int) model.SeriesRef {
	k := sort.Search(len(tv.firsts), func(k int) bool { return tv.firsts[k].start > uint32(i) }) - 1
	return model.SeriesRef{First: tv.firsts[k].first, Rest: tv.Samples[i].rest}
}

// DT is the offset to give AppendDT for the next sample to be appended,
// whose timestamp is t (NoTimestamp for none). Offsets are exact whatever
// the base: T adds back what DT took, both wrapping alike.
func (tv *TargetView) DT(t int64) int32 {
	if d := t - tv.base; uint64(d-(farTS+1)) <= math.MaxInt32-(farTS+1) {
		return int32(d)
	}
	return tv.otherDT(t)
}

// otherDT is DT for a sample without a timestamp or with one too far from
// base. Until a sample is shown relative to base (the first ones may have
// no timestamp), the first timestamp becomes the base: a target's
// timestamps are near each other, wherever they are (the scrape time, a
// capture's, a stuck exporter's).
func (tv *TargetView) otherDT(t int64) int32 {
	if t == NoTimestamp {
		tv.others++
		return noTS
	}
	if tv.others == len(tv.Samples) {
		tv.base = t
		return 0
	}
	tv.others++
	tv.far = append(tv.far, farTime{i: uint32(len(tv.Samples)), t: t})
	return farTS
}

// T is the timestamp of sample i, NoTimestamp if it has none.
func (tv *TargetView) T(i int) int64 {
	if dt := tv.Samples[i].dt; dt > farTS {
		return tv.base + int64(dt)
	}
	return tv.otherT(i)
}

func (tv *TargetView) otherT(i int) int64 {
	if tv.Samples[i].dt == noTS {
		return NoTimestamp
	}
	k := sort.Search(len(tv.far), func(k int) bool { return tv.far[k].i >= uint32(i) })
	return tv.far[k].t
}

// Readers is how many renders hold the view.
func (tv *TargetView) Readers() int { return int(tv.readers.Load()) }

// InUse reports whether a render holds the view (View.Targets without its
// View.Release yet): its buffers must not be reused until it is done.
func (tv *TargetView) InUse() bool { return tv.readers.Load() != 0 }

// View holds the latest scrape of every target: what /metrics serves. It
// holds references to the same encoded series remote write sends, so both
// outputs show the same thing, and renders text only when asked.
type View struct {
	mu      sync.RWMutex
	targets map[string]*TargetView
}

// NewView returns an empty view.
func NewView() *View { return &View{targets: map[string]*TargetView{}} }

// Set replaces the latest scrape of a target and returns the one it
// replaced (nil if none), which no new reader can obtain any more.
func (v *View) Set(tv *TargetView) *TargetView {
	v.mu.Lock()
	old := v.targets[tv.Target.Key]
	v.targets[tv.Target.Key] = tv
	v.mu.Unlock()
	return old
}

// Delete forgets a target that went away.
func (v *View) Delete(key string) {
	v.mu.Lock()
	delete(v.targets, key)
	v.mu.Unlock()
}

// Targets returns the latest views, sorted by target key. The caller reads
// them and then calls Release: until then their buffers are not reused.
func (v *View) Targets() []*TargetView {
	v.mu.RLock()
	out := make([]*TargetView, 0, len(v.targets))
	for _, tv := range v.targets {
		tv.readers.Add(1)
		out = append(out, tv)
	}
	v.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Target.Key < out[j].Target.Key })
	return out
}

// Release ends a read that Targets began.
func (v *View) Release(tvs []*TargetView) {
	for _, tv := range tvs {
		tv.readers.Add(-1)
	}
}

// WriteText writes targets, which the caller holds (View.Targets), in the
// text exposition format (0.0.4): every family once, with its HELP and TYPE,
// then the samples of every target. filter, if not nil, picks the targets to
// include.
// Metric and label names outside the legacy character set are quoted, as
// the text format 1.0.0 writes them.
func WriteText(w io.Writer, targets []*TargetView, filter func(*TargetView) bool) error {
	return WriteTextEscaped(w, targets, filter, commonmodel.NoEscaping)
}

// WriteTextEscaped is WriteText with names escaped by scheme, for a reader
// that negotiated escaping=underscores|dots|values (commonmodel.NoEscaping
// quotes them, escaping=allow-utf-8).
func WriteTextEscaped(w io.Writer, targets []*TargetView, filter func(*TargetView) bool, scheme commonmodel.EscapingScheme) error {
	return writeText(w, heldViews(targets), filter, scheme)
}

// WriteText is the package's WriteText of v's latest views, each taken for
// as long as one of its families is written, not for the whole response: a
// scrape that ends meanwhile reuses the buffers of the view it replaces
// instead of allocating new ones. A render of every node takes seconds, or
// as long as a slow reader wants, and scrapes keep ending during it. A
// target's families may thus come from two consecutive scrapes; a family's
// samples always come from one.
func (v *View) WriteText(w io.Writer, filter func(*TargetView) bool, scheme commonmodel.EscapingScheme) error {
	v.mu.RLock()
	keys := make([]string, 0, len(v.targets))
	for k := range v.targets {
		keys = append(keys, k)
	}
	v.mu.RUnlock()
	sort.Strings(keys)
	return writeText(w, &liveViews{v: v, keys: keys}, filter, scheme)
}

// views are the targets a render writes, in order: the held views of
// View.Targets, or the latest of each taken when needed (liveViews).
type views interface {
	len() int
	// get returns target i's view, or nil if it is gone; the caller
	// puts it back when done reading it.
	get(i int) *TargetView
	put(tv *TargetView)
}

type heldViews []*TargetView

func (h heldViews) len() int              { return len(h) }
func (h heldViews) get(i int) *TargetView { return h[i] }
func (heldViews) put(*TargetView)         {}

type liveViews struct {
	v    *View
	keys []string
}

func (l *liveViews) len() int { return len(l.keys) }

func (l *liveViews) get(i int) *TargetView {
	l.v.mu.RLock()
	tv := l.v.targets[l.keys[i]]
	if tv != nil {
		tv.readers.Add(1)
	}
	l.v.mu.RUnlock()
	return tv
}

func (*liveViews) put(tv *TargetView) { tv.readers.Add(-1) }

// familyRanges appends the ranges of tv's samples in family name to out.
func familyRanges(out []FamilyRange, tv *TargetView, name string) []FamilyRange {
	for _, r := range tv.Ranges {
		if tv.Families[r.Family].Name == name {
			out = append(out, r)
		}
	}
	return out
}

// textWriter writes samples through a bounded buffer.
type textWriter struct {
	w      io.Writer
	buf    []byte
	scheme commonmodel.EscapingScheme
}

// flushAt is the size at which textWriter writes its buffer out.
const flushAt = 60 << 10

func (t *textWriter) flush() error {
	_, err := t.w.Write(t.buf)
	t.buf = t.buf[:0]
	return err
}

func (t *textWriter) header(f Family, typ string) {
	if f.Help != "" {
		t.buf = append(t.buf, "# HELP "...)
		t.buf = enrich.AppendMetricName(t.buf, []byte(f.Name), t.scheme)
		t.buf = append(t.buf, ' ')
		t.buf = enrich.AppendEscapedHelp(t.buf, []byte(f.Help))
		t.buf = append(t.buf, '\n')
	}
	t.buf = append(t.buf, "# TYPE "...)
	t.buf = enrich.AppendMetricName(t.buf, []byte(f.Name), t.scheme)
	t.buf = append(t.buf, ' ')
	t.buf = append(t.buf, typ...)
	t.buf = append(t.buf, '\n')
}

func (t *textWriter) samples(tv *TargetView, rs []FamilyRange) error {
	for _, r := range rs {
		if r.Start == r.End {
			continue
		}
		ref := tv.Ref(r.Start)
		k := sort.Search(len(tv.firsts), func(k int) bool { return tv.firsts[k].start > uint32(r.Start) })
		for i := r.Start; i < r.End; i++ {
			if k < len(tv.firsts) && tv.firsts[k].start == uint32(i) {
				ref.First = tv.firsts[k].first
				k++
			}
			s := &tv.Samples[i]
			ref.Rest = s.rest
			ts := tv.T(i)
			t.buf = enrich.AppendSampleLineEscaped(t.buf, tv.Table, ref, ts, s.V(), ts != NoTimestamp, t.scheme)
			if len(t.buf) > flushAt {
				if err := t.flush(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// normalized reports whether every le (histogram) or quantile (summary)
// value of the family's samples in tvs (ranges rs[k] of tvs[k]) is as a
// reader that sees the TYPE line writes it (le="1" becomes le="1.0"): a
// series parsed before its family's TYPE kept its value as written, and
// under that TYPE the reader would see another series than remote write
// sends.
func normalized(tvs []*TargetView, rs [][]FamilyRange, typ string) bool {
	label := "le"
	if typ == "summary" {
		label = "quantile"
	}
	var floatBuf [32]byte
	for k, tv := range tvs {
		for _, r := range rs[k] {
			for i := r.Start; i < r.End; i++ {
				it := tv.Table.Labels(tv.Ref(i))
				for it.Next() {
					if string(it.Name) != label {
						continue
					}
					if f, err := strconv.ParseFloat(string(it.Value), 64); err == nil && !bytes.Equal(labels.AppendOpenMetricsFloat(floatBuf[:0], f), it.Value) {
						return false
					}
				}
			}
		}
	}
	return true
}

// writeText renders vs family by family, in name order, and within a
// family target by target. A counter's or gauge's samples are written from
// one view at a time; a histogram's or summary's need every target's view
// of the family held at once, for its TYPE line depends on them all
// (normalized).
func writeText(w io.Writer, vs views, filter func(*TargetView) bool, scheme commonmodel.EscapingScheme) error {
	take := func(i int) *TargetView {
		tv := vs.get(i)
		if tv != nil && filter != nil && !filter(tv) {
			vs.put(tv)
			return nil
		}
		return tv
	}
	// The families, named once each: views share their family texts.
	seen := map[string]bool{}
	var names []string
	for i := range vs.len() {
		tv := take(i)
		if tv == nil {
			continue
		}
		for _, r := range tv.Ranges {
			if name := tv.Families[r.Family].Name; !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
		vs.put(tv)
	}
	sort.Strings(names)

	t := &textWriter{w: w, buf: make([]byte, 0, flushAt+4<<10), scheme: scheme}
	var rs []FamilyRange
	var held []*TargetView
	var heldRanges [][]FamilyRange
	for _, name := range names {
		headed := false
		for i := 0; i < vs.len(); i++ {
			tv := take(i)
			if tv == nil {
				continue
			}
			rs = familyRanges(rs[:0], tv, name)
			if len(rs) == 0 {
				vs.put(tv)
				continue
			}
			f := tv.Families[rs[0].Family]
			if !headed && (f.Type == "histogram" || f.Type == "summary") {
				// This view and every later one with the family, held
				// until the family is written.
				held, heldRanges = append(held[:0], tv), append(heldRanges[:0], rs)
				rs = nil
				for j := i + 1; j < vs.len(); j++ {
					if tv := take(j); tv != nil {
						if r := familyRanges(nil, tv, name); len(r) > 0 {
							held, heldRanges = append(held, tv), append(heldRanges, r)
							continue
						}
						vs.put(tv)
					}
				}
				typ := f.Type
				if !normalized(held, heldRanges, typ) {
					typ = "untyped"
				}
				t.header(f, typ)
				var err error
				for k, tv := range held {
					if err == nil {
						err = t.samples(tv, heldRanges[k])
					}
					vs.put(tv)
				}
				if err != nil {
					return err
				}
				break
			}
			if !headed {
				t.header(f, f.Type)
				headed = true
			}
			err := t.samples(tv, rs)
			vs.put(tv)
			if err != nil {
				return err
			}
		}
	}
	return t.flush()
}
