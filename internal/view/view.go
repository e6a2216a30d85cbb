package view

import (
	"io"
	"math"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
)

// Family is the metadata of one metric family as the target exposed it.
type Family struct {
	Name, Type, Help string
}

// ViewSample is one sample of the latest scrape, as the /metrics view shows it.
// It holds no pointer (its labels are in TargetView.Table): 24 bytes.
type ViewSample struct {
	Ref model.SeriesRef
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
	Target   *scrape.Target
	Table    *model.LabelTable // the labels of Samples
	Families []Family          // indexed by FamilyRange.Family; never modified in place
	Samples  []ViewSample
	Ranges   []FamilyRange
	readers  atomic.Int32 // renders in progress (View.Targets .. View.Release)
}

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

// WriteText writes the view in the text exposition format (0.0.4): every
// family once, with its HELP and TYPE, then the samples of every target.
// filter, if not nil, picks the targets to include.
func WriteText(w io.Writer, targets []*TargetView, filter func(*TargetView) bool) error {
	type chunk struct {
		name string
		tv   *TargetView
		r    FamilyRange
	}
	var chunks []chunk
	for _, tv := range targets {
		if filter != nil && !filter(tv) {
			continue
		}
		for _, r := range tv.Ranges {
			chunks = append(chunks, chunk{tv.Families[r.Family].Name, tv, r})
		}
	}
	sort.SliceStable(chunks, func(i, j int) bool { return chunks[i].name < chunks[j].name })

	buf := make([]byte, 0, 64<<10)
	flush := func() error {
		_, err := w.Write(buf)
		buf = buf[:0]
		return err
	}
	for i, ch := range chunks {
		if i == 0 || chunks[i-1].name != ch.name {
			f := ch.tv.Families[ch.r.Family]
			if f.Help != "" {
				buf = append(buf, "# HELP "...)
				buf = append(buf, f.Name...)
				buf = append(buf, ' ')
				buf = enrich.AppendEscapedHelp(buf, []byte(f.Help))
				buf = append(buf, '\n')
			}
			buf = append(buf, "# TYPE "...)
			buf = append(buf, f.Name...)
			buf = append(buf, ' ')
			buf = append(buf, f.Type...)
			buf = append(buf, '\n')
		}
		for _, s := range ch.tv.Samples[ch.r.Start:ch.r.End] {
			buf = enrich.AppendSampleLine(buf, ch.tv.Table, s.Ref, s.T, s.V, s.T != NoTimestamp)
			if len(buf) > 60<<10 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}
