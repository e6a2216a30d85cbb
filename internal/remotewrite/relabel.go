package remotewrite

import (
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// relabelIdle is how long a producer's relabelled series are kept after its
// last sample (a target that went away).
const relabelIdle = 10 * time.Minute

// relabeler applies an endpoint's write_relabel_configs before its queue,
// with model/relabel. A series is relabelled once: the result is cached by
// its reference in the producer's table and re-interned into a table of the
// relabeler's own with the producer's Key, so that the queue keeps the
// producer's series on one shard and in order.
type relabeler struct {
	cfgs []*relabel.Config
	now  func() time.Time

	mu        sync.Mutex
	producers map[uint64]*relabelProducer // by LabelTable.Key
	swept     time.Time
	out       sync.Pool // *[]model.Sample
}

type relabelProducer struct {
	mu       sync.Mutex
	tableID  uint64 // the producer table the cache refers to
	cache    map[model.SeriesRef]relabelResult
	interner *model.LabelInterner
	used     time.Time
	builder  labels.ScratchBuilder
	lb       *labels.Builder
	ls       []model.Label
}

type relabelResult struct {
	ref  model.SeriesRef
	keep bool
}

func newRelabeler(cfgs []*relabel.Config) *relabeler {
	r := &relabeler{cfgs: cfgs, now: time.Now, producers: map[uint64]*relabelProducer{}}
	r.out.New = func() any { return new([]model.Sample) }
	return r
}

// apply returns the relabelled samples in a pooled slice; the caller hands
// it back with release once the queue has copied them.
func (r *relabeler) apply(samples []model.Sample) *[]model.Sample {
	out := r.out.Get().(*[]model.Sample)
	*out = (*out)[:0]
	now := r.now()
	for start := 0; start < len(samples); {
		t := samples[start].Table
		end := start + 1
		for end < len(samples) && samples[end].Table == t {
			end++
		}
		*out = r.producer(t.Key, now).relabel(r.cfgs, samples[start:end], *out, now)
		start = end
	}
	return out
}

func (r *relabeler) release(out *[]model.Sample) {
	clear(*out) // do not keep tables alive
	r.out.Put(out)
}

func (r *relabeler) producer(key uint64, now time.Time) *relabelProducer {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.swept) > time.Minute {
		for k, p := range r.producers {
			p.mu.Lock()
			idle := now.Sub(p.used) > relabelIdle
			p.mu.Unlock()
			if idle {
				delete(r.producers, k)
			}
		}
		r.swept = now
	}
	p := r.producers[key]
	if p == nil {
		p = &relabelProducer{used: now}
		r.producers[key] = p
	}
	return p
}

// relabel handles samples of one producer table, appending the kept ones,
// relabelled, to out.
func (p *relabelProducer) relabel(cfgs []*relabel.Config, samples []model.Sample, out []model.Sample, now time.Time) []model.Sample {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.used = now
	t := samples[0].Table
	if p.interner == nil || t.ID != p.tableID {
		// The producer compacted its table: references changed meaning.
		// Start over; tables handed out before stay valid for the queue.
		p.tableID = t.ID
		p.cache = make(map[model.SeriesRef]relabelResult, len(samples))
		p.interner = model.NewLabelInterner(t.Key)
	}
	first := len(out)
	for _, s := range samples {
		if !s.Ref.Valid() {
			continue // never sent; the encoder would drop it anyway
		}
		res, ok := p.cache[s.Ref]
		if !ok {
			res = p.compute(cfgs, t, s.Ref)
			p.cache[s.Ref] = res
		}
		if res.keep {
			out = append(out, model.Sample{Ref: res.ref, T: s.T, V: s.V})
		}
	}
	table := p.interner.Table()
	for i := first; i < len(out); i++ {
		out[i].Table = table
	}
	return out
}

func (p *relabelProducer) compute(cfgs []*relabel.Config, t *model.LabelTable, ref model.SeriesRef) relabelResult {
	p.builder.Reset()
	it := t.Labels(ref)
	for it.Next() {
		p.builder.Add(string(it.Name), string(it.Value))
	}
	p.builder.Sort()
	if p.lb == nil {
		p.lb = labels.NewBuilder(labels.EmptyLabels())
	}
	p.lb.Reset(p.builder.Labels())
	if !relabel.ProcessBuilder(p.lb, cfgs...) {
		return relabelResult{}
	}
	ls := p.lb.Labels()
	if ls.IsEmpty() {
		return relabelResult{}
	}
	p.ls = p.ls[:0]
	ls.Range(func(l labels.Label) { p.ls = append(p.ls, model.Label{Name: l.Name, Value: l.Value}) })
	return relabelResult{ref: p.interner.Intern(p.ls), keep: true}
}
