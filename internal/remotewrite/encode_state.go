package remotewrite

import "github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

// What the encoder remembers of each producer's label table between
// batches (which runs it wrote where, for copies), and how it is reset.

// tableState remembers, for one table lineage, where in the current request
// each symbol and each run was last written. Positions are stamped
// gen<<32|position and are stale unless their gen is the state's: starting a
// request or a lineage bumps gen instead of clearing the arrays.
type tableState struct {
	id   uint64 // model.LabelTable.ID; 0 is no table
	gen  uint32 // never 0, so zeroed entries are stale
	used uint64
	sym  []symEntry // by symbol index
	// run is indexed like the table's rests, at twice the offset, so it
	// costs twice what they do (a run's record there takes 3 words or more,
	// model.LabelTable.RestsLen; 2 + its number of edits for a run stored as
	// another's edits). For the run at offset r: run[2r] is where
	// it was last written and run[2r+1] that position's gen; if the run has
	// 4 symbols or more, run[2r+2:2r+6] hold the timestamp and value bits of
	// the sample written right after it (runs end their TimeSeries).
	run []uint32
	// touchedSym and touchedRun list the symbols and run offsets written
	// since the arrays were last all zero, so that handing the state to
	// another lineage clears those entries rather than the whole arrays. A
	// tenant's request (tenant routing) holds short stretches of many
	// targets' series: clearing table-sized arrays at each switch cost more
	// than the encoding (20% more relay CPU in the 50x30 load test).
	touchedSym []uint32
	touchedRun []uint32
}

// runSampleMin is the least number of symbols a run needs for the sample
// after it to be remembered in its words of tableState.run.
const runSampleMin = 4

type symEntry struct {
	at uint64 // gen<<32 | position where last written
	// size is, if the symbol was last written as the first label of a
	// TimeSeries, that TimeSeries' size (so its header, 0x0a + uvarint(size),
	// is right before it), else 0.
	size uint32
	n    uint32 // the symbol's length, once written
}

// invalidate makes every entry stale.
func (st *tableState) invalidate() {
	st.gen++
	if st.gen == 0 { // wrapped: old stamps could match again
		st.clearAll()
		st.gen = 1
	}
}

func (st *tableState) clearAll() {
	clear(st.sym)
	clear(st.run)
	st.touchedSym, st.touchedRun = st.touchedSym[:0], st.touchedRun[:0]
}

// reset zeroes every entry, touching only those written when they are few.
func (st *tableState) reset() {
	if len(st.touchedSym) > len(st.sym)/8 || 6*len(st.touchedRun) > len(st.run)/8 {
		st.clearAll()
		return
	}
	for _, s := range st.touchedSym {
		st.sym[s] = symEntry{}
	}
	for _, r := range st.touchedRun {
		// A run's words are 2r, 2r+1 and, with 4 symbols or more,
		// 2r+2:2r+6; words past a shorter run are another run's, zero
		// unless touched.
		k := 2 * int(r)
		clear(st.run[k:min(k+6, len(st.run))])
	}
	st.touchedSym, st.touchedRun = st.touchedSym[:0], st.touchedRun[:0]
}

// fit grows the arrays to cover t, keeping their entries: a later snapshot
// of a lineage only adds symbols and runs.
func (st *tableState) fit(t *model.LabelTable) {
	if n := t.NumSymbols(); n > len(st.sym) {
		st.sym = append(st.sym, make([]symEntry, max(n, 2*len(st.sym))-len(st.sym))...)
	}
	if n := 2 * t.RestsLen(); n > len(st.run) {
		st.run = append(st.run, make([]uint32, max(n, 2*len(st.run))-len(st.run))...)
	}
}
