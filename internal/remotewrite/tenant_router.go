package remotewrite

import (
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// Tenant marks in the router's caches: 0 is "not computed yet", noTenant
// "the series has no usable tenant label", anything else a tenant ID + 2.
const (
	unknownTenant = 0
	noTenant      = 1
	tenantBase    = 2
)

// tenantRouter finds the tenant of a series, once per interned label run
// rather than per sample: a series is a first symbol and a run of the
// producer's LabelTable, the tenant label is one symbol of the run (it sorts
// after __name__), and the ~50 series of one container share one run. So a
// sample costs one array load in the run's lineage cache; a run is looked at
// once in the lifetime of its lineage (LabelTable.ID: tables of one lineage
// only ever add runs, so a cached answer stays right). Stale markers carry
// the series' old reference, so a series whose namespace moved to another
// team sends its stale marker to the old tenant.
//
// Tenants are small integer IDs into names; a tenant value seen once costs a
// map entry until the IDs are compacted (see compact). Not safe for
// concurrent use: the tenant queue's lock guards it.
type tenantRouter struct {
	label   []byte
	missing uint32 // the default tenant's mark, or noTenant when they are dropped
	remove  bool

	ids   map[string]uint32
	names []string

	lineages map[uint64]*lineageCache
}

// lineageCache holds the answers for one table lineage.
type lineageCache struct {
	used time.Time
	// sym is by symbol: the tenant mark of a symbol that is the tenant
	// label (its value), noTenant for any other symbol. Only symbols met
	// in runs or as a first label are filled.
	sym []uint32
	// run is by run offset (like the table's rests): the tenant mark of the
	// run. Only offsets that start a run are filled.
	run []uint32

	// With remove: the series without the tenant label, interned in a
	// shadow table of their own (the producer's table is immutable).
	shadow    *model.LabelInterner
	shadowSym []uint32 // symbol -> shadow symbol + 1
	shadowRun []uint32 // run offset -> shadow run offset + 1
	// firstTenant: series whose first label is the tenant label (a label
	// name sorting before every other of the series): rare, interned whole.
	firstTenant map[uint64]model.SeriesRef
	scratch     []model.Label
	runSyms     []uint32 // a run's symbols (scratch)

	// With metadata sending (tenant_metadata.go): the name mark by symbol,
	// and by run for series whose first label is not __name__; valid for
	// the name tracker's generation nameGen.
	name    []uint32
	runName map[uint32]uint32
	nameGen uint64
}

func newTenantRouter(cfg TenantConfig) *tenantRouter {
	r := &tenantRouter{
		label:    []byte(cfg.Label),
		missing:  noTenant,
		remove:   cfg.RemoveLabel,
		ids:      map[string]uint32{},
		lineages: map[uint64]*lineageCache{},
	}
	if cfg.Missing == MissingDefault {
		r.missing = r.id(cfg.Default)
	}
	return r
}

// id returns the tenant mark of a tenant name, interning it.
func (r *tenantRouter) id(name string) uint32 {
	if id, ok := r.ids[name]; ok {
		return id + tenantBase
	}
	id := uint32(len(r.names))
	r.names = append(r.names, name)
	r.ids[name] = id
	return id + tenantBase
}

// lineage returns the cache of t's lineage, sized to cover t.
func (r *tenantRouter) lineage(t *model.LabelTable, now time.Time) *lineageCache {
	lc := r.lineages[t.ID]
	if lc == nil {
		lc = &lineageCache{}
		r.lineages[t.ID] = lc
	}
	lc.used = now
	if n := t.NumSymbols(); n > len(lc.sym) {
		lc.sym = append(lc.sym, make([]uint32, max(n, 2*len(lc.sym))-len(lc.sym))...)
	}
	if n := t.RestsLen(); n > len(lc.run) {
		lc.run = append(lc.run, make([]uint32, max(n, 2*len(lc.run))-len(lc.run))...)
	}
	return lc
}

// tenantOf returns the tenant mark of the series ref of t (noTenant if it has
// none: the caller applies the missing policy).
func (r *tenantRouter) tenantOf(lc *lineageCache, t *model.LabelTable, ref model.SeriesRef) uint32 {
	m := lc.run[ref.Rest]
	if m == unknownTenant {
		m = r.runTenant(lc, t, ref.Rest)
	}
	if m == noTenant {
		// The first label is the tenant label only if the run lacks it.
		f := ref.FirstSymbol()
		if m = lc.sym[f]; m == unknownTenant {
			m = r.symTenant(lc, t, f)
		}
	}
	return m
}

func (r *tenantRouter) runTenant(lc *lineageCache, t *model.LabelTable, off uint32) uint32 {
	lc.runSyms = t.AppendRest(lc.runSyms[:0], off)
	syms := lc.runSyms
	m := uint32(noTenant)
	for _, s := range syms {
		sm := lc.sym[s]
		if sm == unknownTenant {
			sm = r.symTenant(lc, t, s)
		}
		if sm != noTenant {
			m = sm
			break
		}
	}
	lc.run[off] = m
	return m
}

// symTenant decides once whether symbol s is the tenant label with a value
// that is a valid tenant ID; an invalid value counts as no tenant.
func (r *tenantRouter) symTenant(lc *lineageCache, t *model.LabelTable, s uint32) uint32 {
	m := uint32(noTenant)
	if name, value, ok := t.SymbolLabel(s); ok && string(name) == string(r.label) {
		if v := string(value); validTenantID(v) == nil {
			m = r.id(v)
		}
	}
	lc.sym[s] = m
	return m
}

// strip returns the series ref of t without the tenant label, in lc's shadow
// table; the caller sets Sample.Table to lc.shadow.Table() afterwards.
func (r *tenantRouter) strip(lc *lineageCache, t *model.LabelTable, ref model.SeriesRef) model.SeriesRef {
	if lc.shadow == nil {
		lc.shadow = model.NewLabelInterner(t.Key)
	}
	if n := t.NumSymbols(); n > len(lc.shadowSym) {
		lc.shadowSym = append(lc.shadowSym, make([]uint32, max(n, 2*len(lc.shadowSym))-len(lc.shadowSym))...)
	}
	if n := t.RestsLen(); n > len(lc.shadowRun) {
		lc.shadowRun = append(lc.shadowRun, make([]uint32, max(n, 2*len(lc.shadowRun))-len(lc.shadowRun))...)
	}
	f := ref.FirstSymbol()
	invalid := ref.First &^ f // the invalid mark, kept: removing a label does not fix a series
	if lc.sym[f] != noTenant && lc.sym[f] != unknownTenant {
		return r.stripFirst(lc, t, ref)
	}
	sf, sr := lc.shadowSym[f], lc.shadowRun[ref.Rest]
	if sf == 0 {
		name, value, _ := t.SymbolLabel(f)
		lc.scratch = append(lc.scratch[:0], model.Label{Name: string(name), Value: string(value)})
		sf = lc.shadow.Intern(lc.scratch).FirstSymbol() + 1
		lc.shadowSym[f] = sf
	}
	if sr == 0 {
		// A placeholder first label, so that Intern interns the run as a run.
		lc.scratch = append(lc.scratch[:0], model.Label{})
		lc.runSyms = t.AppendRest(lc.runSyms[:0], ref.Rest)
		syms := lc.runSyms
		for _, s := range syms {
			sm := lc.sym[s]
			if sm == unknownTenant {
				sm = r.symTenant(lc, t, s)
			}
			if sm == noTenant { // an invalid tenant value stays, as its series goes to the default
				name, value, _ := t.SymbolLabel(s)
				lc.scratch = append(lc.scratch, model.Label{Name: string(name), Value: string(value)})
			}
		}
		sr = lc.shadow.Intern(lc.scratch).Rest + 1
		lc.shadowRun[ref.Rest] = sr
	}
	return model.SeriesRef{First: (sf - 1) | invalid, Rest: sr - 1}
}

func (r *tenantRouter) stripFirst(lc *lineageCache, t *model.LabelTable, ref model.SeriesRef) model.SeriesRef {
	key := uint64(ref.FirstSymbol())<<32 | uint64(ref.Rest)
	if s, ok := lc.firstTenant[key]; ok {
		return s
	}
	lc.scratch = lc.scratch[:0]
	it := t.Labels(ref)
	it.Next() // the tenant label
	for it.Next() {
		lc.scratch = append(lc.scratch, model.Label{Name: string(it.Name), Value: string(it.Value)})
	}
	s := lc.shadow.Intern(lc.scratch)
	if !ref.Valid() {
		s.First |= ref.First &^ ref.FirstSymbol()
	}
	if lc.firstTenant == nil {
		lc.firstTenant = map[uint64]model.SeriesRef{}
	}
	lc.firstTenant[key] = s
	return s
}

// sweep forgets lineages not used since cutoff (compacted away, or their
// target gone).
func (r *tenantRouter) sweep(cutoff time.Time) {
	for id, lc := range r.lineages {
		if lc.used.Before(cutoff) {
			delete(r.lineages, id)
		}
	}
}

// needsCompaction reports whether tenant names that no longer have a queue
// hold enough of the ID space to rebuild it.
func (r *tenantRouter) needsCompaction(live, maxTenants int) bool {
	return len(r.names) > live+2*maxTenants+64
}

// compact renumbers the tenants keep says are live (by old ID) and forgets
// the others and every cached answer, which hold old IDs. It returns the
// new ID of every kept old ID.
func (r *tenantRouter) compact(keep func(old uint32) bool, defaultName string, hasDefault bool) map[uint32]uint32 {
	remap := map[uint32]uint32{}
	names := r.names
	r.names = nil
	r.ids = map[string]uint32{}
	for old, n := range names {
		if keep(uint32(old)) {
			remap[uint32(old)] = r.id(n) - tenantBase
		}
	}
	if hasDefault {
		r.missing = r.id(defaultName)
	}
	clear(r.lineages)
	return remap
}
