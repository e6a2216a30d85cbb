package remotewrite

import (
	"context"
	"log/slog"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// Metadata with tenant routing: a family's metadata goes to every tenant
// whose series used the family since the previous metadata send, in
// requests of that tenant only (its header), so each tenant's metadata API
// lists exactly its families. A tenant's queue records which metric names
// (__name__ values) its series had; at each send interval the sender takes
// those sets, maps each name to its family (the name itself, or the name
// less a histogram/summary/counter suffix), and sends per tenant.
//
// Cost: names are small IDs cached per symbol of a producer's table, like
// the tenant (tenantRouter), so a sample costs an array load and, when its
// tenant or name differs from the previous sample's, one bit set. Memory:
// at most maxTrackedNames names between two sends (later ones are not
// tracked, and counted), a bit per name per tenant; the table starts afresh
// at every send, and a tenant's bits go with the tenant when it is forgotten.

// maxTrackedNames bounds the metric names an endpoint tracks between two
// metadata sends: 8 KiB of bits per tenant at most. A kubelet's endpoints
// expose a few hundred.
const maxTrackedNames = 1 << 16

const metricNameLabel = "__name__"

// Name marks in a lineage's cache (lineageCache.name).
const (
	nameUnknown   = 0 // not looked at yet
	nameInRun     = 1 // the first label is not __name__ (a label name sorting before it): look in the run
	nameUntracked = 2 // no __name__, or over maxTrackedNames
	nameBase      = 3 // a name ID + nameBase
)

// familySuffixes are the suffixes of a family's series names (histograms,
// summaries, OpenMetrics counters and info) that its metadata does not
// carry, tried when a series name is not itself a family.
var familySuffixes = []string{"_bucket", "_count", "_sum", "_total", "_created", "_info", "_gcount", "_gsum"}

// nameTracker interns the metric names seen since the last take. Guarded by
// the tenant queue's lock.
type nameTracker struct {
	gen   uint64 // bumped at every take: lineage caches of an older gen are void
	ids   map[string]uint32
	names []string
	over  int // names not tracked since the last take (maxTrackedNames)
}

func newNameTracker() *nameTracker { return &nameTracker{gen: 1, ids: map[string]uint32{}} }

// prepare readies lc's name cache for t: voids it after a take, sizes it.
func (nt *nameTracker) prepare(lc *lineageCache, t *model.LabelTable) {
	if lc.nameGen != nt.gen {
		clear(lc.name)
		clear(lc.runName)
		lc.nameGen = nt.gen
	}
	if n := t.NumSymbols(); n > len(lc.name) {
		lc.name = append(lc.name, make([]uint32, max(n, 2*len(lc.name))-len(lc.name))...)
	}
}

// nameOf returns the name mark of series ref of t; prepare(lc, t) came first.
func (nt *nameTracker) nameOf(lc *lineageCache, t *model.LabelTable, ref model.SeriesRef) uint32 {
	f := ref.FirstSymbol()
	m := lc.name[f]
	if m == nameUnknown {
		m = nameInRun
		if name, value, ok := t.SymbolLabel(f); ok && string(name) == metricNameLabel {
			m = nt.id(value)
		}
		lc.name[f] = m
	}
	if m != nameInRun {
		return m
	}
	if m, ok := lc.runName[ref.Rest]; ok {
		return m
	}
	m = nameUntracked
	lc.runSyms = t.AppendRest(lc.runSyms[:0], ref.Rest)
	syms := lc.runSyms
	for _, s := range syms {
		if name, value, ok := t.SymbolLabel(s); ok && string(name) == metricNameLabel {
			m = nt.id(value)
			break
		}
	}
	if lc.runName == nil {
		lc.runName = map[uint32]uint32{}
	}
	lc.runName[ref.Rest] = m
	return m
}

func (nt *nameTracker) id(value []byte) uint32 {
	if id, ok := nt.ids[string(value)]; ok {
		return id + nameBase
	}
	if len(nt.names) >= maxTrackedNames {
		nt.over++
		return nameUntracked
	}
	id := uint32(len(nt.names))
	v := string(value)
	nt.names = append(nt.names, v)
	nt.ids[v] = id
	return id + nameBase
}

// reset forgets every name (after a take): IDs start again from 0.
func (nt *nameTracker) reset() {
	nt.gen++
	if len(nt.names) > 4096 {
		nt.ids = map[string]uint32{} // do not keep a burst's buckets
	} else {
		clear(nt.ids)
	}
	clear(nt.names)
	nt.names = nt.names[:0]
	nt.over = 0
}

// nameSet is a set of name IDs, a bit each.
type nameSet []uint64

func (s *nameSet) add(id uint32) {
	w := int(id >> 6)
	if w >= len(*s) {
		*s = append(*s, make([]uint64, w+1-len(*s))...)
	}
	(*s)[w] |= 1 << (id & 63)
}

// trackNames turns the recording of each tenant's metric names on: the
// metadata sender does, when it starts.
func (q *tenantQueue) trackNames() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.names == nil {
		q.names = newNameTracker()
	}
}

// noteNames records, after append has routed samples (marks: their tenant
// marks; names: their name marks), which names each tenant used.
func (q *tenantQueue) noteNames(marks, names []uint32) {
	var pm, pn uint32
	for j, m := range marks {
		n := names[j]
		if m < tenantBase || n < nameBase || m == pm && n == pn {
			continue
		}
		pm, pn = m, n
		if id := int(m - tenantBase); id < len(q.tenants) {
			if ts := q.tenants[id]; ts != nil {
				ts.names.add(n - nameBase)
			}
		}
	}
}

// tenantNames are the metric names one tenant's series had.
type tenantNames struct {
	tenant string
	names  []string
	// backoff: the tenant's writes are failing (429, 5xx) and it waits
	// for its retry; a metadata request would only add to its load.
	backoff bool
}

// takeNames returns each tenant's names since the last take and starts
// afresh, with how many names were over maxTrackedNames.
func (q *tenantQueue) takeNames() (out []tenantNames, over int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	nt := q.names
	if nt == nil {
		return nil, 0
	}
	now := q.now()
	for _, ts := range q.tenants {
		if ts == nil {
			continue
		}
		var names []string
		for wi, w := range ts.names {
			for w != 0 {
				names = append(names, nt.names[wi<<6+bits.TrailingZeros64(w)])
				w &= w - 1
			}
		}
		if len(names) == 0 {
			ts.names = nil // idle this interval: keep nothing
			continue
		}
		clear(ts.names)
		out = append(out, tenantNames{tenant: ts.name, names: names, backoff: ts.retryAt.After(now)})
	}
	over = nt.over
	nt.reset()
	return out, over
}

// familyIndex returns where name's family is in md (indexed by family
// name): the name itself, or the name less one of familySuffixes.
func familyIndex(byFamily map[string]int, name string) (int, bool) {
	if i, ok := byFamily[name]; ok {
		return i, true
	}
	for _, suf := range familySuffixes {
		if base, ok := strings.CutSuffix(name, suf); ok {
			if i, ok := byFamily[base]; ok {
				return i, true
			}
		}
	}
	return 0, false
}

// sendTenantMetadata is sendMetadata for an endpoint with tenant routing:
// every cfg.SendInterval, each tenant whose series were queued since the
// previous interval gets the metadata of their families, in requests of
// its own (at most cfg.MaxSamplesPerSend entries each, 0: all in one) with
// its tenant header. A failed request is not retried: the next interval
// sends the families seen again. A tenant backing off after a failed write
// gets none until its backoff is over.
func sendTenantMetadata(ctx context.Context, q *tenantQueue, cfg MetadataConfig, src MetadataSource, m *metadataMetrics, logger *slog.Logger) {
	q.trackNames()
	t := time.NewTicker(cfg.SendInterval)
	defer t.Stop()
	limiter := newLogLimiter(logInterval)
	var (
		md       []Metadata
		sel      []int
		batch    []Metadata
		byFamily = map[string]int{}
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tenants, over := q.takeNames()
		if over > 0 {
			if ok, suppressed := limiter.allow("metadata_names"); ok {
				logger.Warn("more metric names in one metadata interval than tracked; their families' metadata is not sent this interval",
					"max_names", maxTrackedNames, "untracked", over, "similar_messages_suppressed", suppressed)
			}
		}
		if len(tenants) == 0 {
			continue
		}
		md = src.AppendMetadata(md[:0])
		clear(byFamily)
		for i, e := range md {
			byFamily[e.Family] = i
		}
		for _, tn := range tenants {
			sel = sel[:0]
			for _, name := range tn.names {
				if i, ok := familyIndex(byFamily, name); ok {
					sel = append(sel, i)
				}
			}
			slices.Sort(sel)
			sel = slices.Compact(sel) // a histogram's three names are one family
			batch = batch[:0]
			for _, i := range sel {
				batch = append(batch, md[i])
			}
			if tn.backoff {
				m.deferred.WithLabelValues(q.name, q.urlLabel).Add(float64(len(batch)))
				continue
			}
			for start := 0; start < len(batch); {
				end := len(batch)
				if cfg.MaxSamplesPerSend > 0 {
					end = min(end, start+cfg.MaxSamplesPerSend)
				}
				_, err := q.client.sendTenant(ctx, encodeMetadata(batch[start:end]), q.tcfg.Header, tn.tenant)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					m.failed.WithLabelValues(q.name, q.urlLabel).Add(float64(end - start))
					if ok, suppressed := limiter.allow("metadata"); ok {
						logger.Warn("sending a tenant's metric metadata failed; its families seen again are sent at the next interval",
							"tenant", tn.tenant, "entries", end-start, "err", err, "similar_messages_suppressed", suppressed)
					}
				} else {
					m.sent.WithLabelValues(q.name, q.urlLabel).Add(float64(end - start))
				}
				start = end
			}
		}
	}
}
