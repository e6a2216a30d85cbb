package model

import (
	"bytes"
	"hash/maphash"
	"slices"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// SeriesRef names one label set in a LabelTable: its first label (a symbol)
// and the rest (an interned run of symbols). Splitting off the first label,
// almost always __name__, lets the ~50 series of one container share one
// run of their ~13 other labels: a series costs 8 bytes of references, and
// the encoder can copy the shared run as a whole.
type SeriesRef struct {
	First uint32 // symbol index; the top bit marks an invalid set
	Rest  uint32 // offset of the run in LabelTable.rests
}

const invalidRef = 1 << 31

// Label is one name/value pair.
type Label struct {
	Name, Value string
}

// Valid reports whether the label set follows the rules every receiver
// enforces (see Intern); invalid sets are never sent.
func (r SeriesRef) Valid() bool { return r.First&invalidRef == 0 }

func (r SeriesRef) first() uint32 { return r.First &^ invalidRef }

// FirstSymbol is the symbol index of the first label, without the invalid mark.
func (r SeriesRef) FirstSymbol() uint32 { return r.first() }

// LabelTable is an immutable snapshot of one producer's interned labels.
// Symbols are label encodings exactly as they appear inside a
// prompb.TimeSeries (one field-1 Label message each), so encoding a series
// is copying its symbols. A LabelTable holds no pointers but its three
// arrays: hundreds of thousands of series cost the garbage collector
// nothing to scan.
//
// Snapshots of one LabelInterner share an ID: the interner only appends, so
// a reference valid in one snapshot is valid, with the same meaning, in every
// later snapshot of that ID. Compaction starts a new ID.
type LabelTable struct {
	ID uint64
	// Key is the producer's: the same for all its tables. Queues shard on
	// it, so every series keeps its sample order.
	Key    uint64
	syms   []byte   // symbol encodings, back to back
	symOff []uint32 // symbol i is syms[symOff[i]:symOff[i+1]]
	rests  []uint32 // runs, flat or in two levels (runs.go)
}

// Raw returns the table's symbols (read-only) for an encoder that copies
// them without a call per symbol, as remotewrite's does: symbol i is
// syms[symOff[i]:symOff[i+1]].
func (t *LabelTable) Raw() (syms []byte, symOff []uint32) {
	return t.syms, t.symOff
}

// NumSymbols is the number of symbols; symbol indexes are below it.
func (t *LabelTable) NumSymbols() int { return len(t.symOff) - 1 }

// RestsLen bounds the Rest offsets of the table's SeriesRefs. The record of
// a run with symbols takes 3 words or more from its offset on: a consumer
// may keep that many words of its own at a run's offset, or twice that many
// at twice the offset.
func (t *LabelTable) RestsLen() int { return len(t.rests) }

// Symbol returns the encoding of symbol i (read-only). Its capacity ends
// with it, so appending to it copies instead of overwriting the next symbol
// of a table other goroutines read.
func (t *LabelTable) Symbol(i uint32) []byte {
	lo, hi := t.symOff[i], t.symOff[i+1]
	return t.syms[lo:hi:hi]
}

// RestLen returns the number of symbols of run r and the length of their
// encodings.
func (t *LabelTable) RestLen(r uint32) (count, encodedLen int) {
	n, l := runHeader(t.rests, r)
	return int(n), int(l)
}

// AppendRest appends the symbols of run r to dst.
func (t *LabelTable) AppendRest(dst []uint32, r uint32) []uint32 {
	return appendRun(dst, t.rests, r)
}

// RestSymbols returns the symbols of run r without copying a run stored
// flat: the table's own (read-only; capacity as for Symbol), else expanded
// into *scratch, which it grows (so the result is never kept as scratch).
func (t *LabelTable) RestSymbols(r uint32, scratch *[]uint32) []uint32 {
	if h := t.rests[r]; h&childRun == 0 {
		return t.rests[r+2 : r+2+h : r+2+h]
	}
	*scratch = appendRun((*scratch)[:0], t.rests, r)
	return *scratch
}

// EncodedLen is the length of the series' label encodings.
func (t *LabelTable) EncodedLen(ref SeriesRef) int {
	f := ref.first()
	return int(t.symOff[f+1]-t.symOff[f]) + int(runEncLen(t.rests, ref.Rest))
}

// AppendEncoded appends the series' label encodings (as inside a
// prompb.TimeSeries) to dst.
func (t *LabelTable) AppendEncoded(dst []byte, ref SeriesRef) []byte {
	dst = append(dst, t.Symbol(ref.first())...)
	var syms []uint32
	if r, h := ref.Rest, t.rests[ref.Rest]; h&childRun == 0 {
		syms = t.rests[r+2 : r+2+h]
	} else {
		var buf [32]uint32 // the run expanded: most fit
		syms = appendRun(buf[:0], t.rests, r)
	}
	for _, s := range syms {
		dst = append(dst, t.syms[t.symOff[s]:t.symOff[s+1]]...)
	}
	return dst
}

// Hash identifies the label set by content, the same in every table.
// It is the xxhash of AppendEncoded's bytes, hashed in one call: a
// Digest.Write per symbol costs about three times as much (a relay under
// pod churn hashes every series it creates and every one it evicts).
func (t *LabelTable) Hash(ref SeriesRef) uint64 {
	var buf [1024]byte // a kubelet's series with its added labels: 300-700 bytes
	return xxhash.Sum64(t.AppendEncoded(buf[:0], ref))
}

// Labels iterates over the series' labels.
func (t *LabelTable) Labels(ref SeriesRef) LabelIter {
	return LabelIter{table: t, first: ref.first(), rest: newRunCursor(t.rests, ref.Rest), hasFirst: true}
}

// Sample is one value of one series, as handed to the remote-write queues.
type Sample struct {
	Table *LabelTable
	Ref   SeriesRef
	T     int64 // milliseconds since the Unix epoch
	V     float64
}

var tableIDs atomic.Uint64

// LabelInterner builds LabelTables: one per producer (a scrape target),
// owned by one goroutine. It interns every label encoding and every run of
// labels after the first, and only ever appends, so that snapshots handed
// to other goroutines stay valid while it grows.
type LabelInterner struct {
	id       uint64
	key      uint64
	syms     []byte
	symOff   []uint32
	rests    []uint32
	symIndex internIndex // encoding -> symbol (index.go)
	runIndex internIndex // run of symbols -> offset in rests
	snapshot *LabelTable
	scratch  []uint32
	buf      []byte
	// last holds the symbols of the last set Intern was given, first
	// label at [0]: consecutive new series (a new pod's, in one family)
	// share most labels, often at the same positions, and comparing with
	// a symbol just used costs less than hashing and probing the index.
	last []uint32
	// liveAfterCompact is the table size right after the last compaction
	// (or start): the baseline NeedsCompaction compares with.
	liveAfterCompact int
	// For runs in two levels (runs.go): by symbol, the shortest root run
	// it is in (offset + 1; 0: none yet), the root of the run interned or
	// found last (the same), and scratch.
	symRoot      []uint32
	lastRoot     uint32
	votes        []rootVote
	edits        []uint32
	scratchEdits []uint32
	expand       []uint32
}

// NewLabelInterner returns an empty interner. key is the producer's
// (LabelTable.Key), e.g. a hash of the target's name.
func NewLabelInterner(key uint64) *LabelInterner {
	b := &LabelInterner{key: key}
	b.reset()
	return b
}

func (b *LabelInterner) reset() {
	b.id = tableIDs.Add(1)
	b.syms = nil
	b.symOff = []uint32{0}
	b.rests = nil
	b.symIndex = internIndex{}
	b.runIndex = internIndex{}
	b.snapshot = nil
	b.last = b.last[:0]
	b.symRoot = b.symRoot[:0]
	b.lastRoot = 0
}

// Intern returns the reference of a label set. ls must be sorted by name;
// if it breaks the rules receivers enforce (sorted, unique, valid names,
// non-empty values, a __name__ label) the reference is marked invalid but
// still usable for the /metrics view and equality.
func (b *LabelInterner) Intern(ls []Label) SeriesRef {
	if len(ls) == 0 {
		return SeriesRef{First: b.symbol(nil) | invalidRef, Rest: b.run(nil)}
	}
	valid := validLabels(ls)
	// The symbols go to scratch, first label included (run is the rest);
	// each is looked for first among the last set's, near its position.
	syms := b.scratch[:0]
	last := b.last
	j := 0 // where in last the next label probably is
	for _, l := range ls {
		b.buf = AppendLabel(b.buf[:0], l.Name, l.Value)
		s, k := b.lastSymbol(b.buf, last, j)
		if k < 0 {
			s = b.symbol(b.buf)
			k = j
		}
		syms = append(syms, s)
		j = k + 1
	}
	b.scratch, b.last = b.last, syms
	ref := SeriesRef{First: syms[0], Rest: b.run(syms[1:])}
	if !valid {
		ref.First |= invalidRef
	}
	return ref
}

// WithRest returns the reference of the set of label first followed by the
// labels of run rest (a SeriesRef.Rest of this interner's, since its last
// compaction), valid as the caller knows the whole set to be (see Intern):
// a producer that knows a new series differs from an interned one only in
// its first label interns that label alone.
func (b *LabelInterner) WithRest(first Label, rest uint32, valid bool) SeriesRef {
	b.buf = AppendLabel(b.buf[:0], first.Name, first.Value)
	ref := SeriesRef{First: b.symbol(b.buf), Rest: rest}
	if !valid {
		ref.First |= invalidRef
	}
	return ref
}

// lastSymbol looks for enc among last[j-1:j+3], the last set's symbols
// around position j (a set with one label more or less than the last, or
// another value at j, is still in step after it): the symbol and its
// position, or -1.
func (b *LabelInterner) lastSymbol(enc []byte, last []uint32, j int) (uint32, int) {
	for k := max(j-1, 0); k < min(j+3, len(last)); k++ {
		s := last[k]
		if bytes.Equal(b.syms[b.symOff[s]:b.symOff[s+1]], enc) {
			return s, k
		}
	}
	return 0, -1
}

// symbol interns one encoding.
func (b *LabelInterner) symbol(enc []byte) uint32 {
	slot, i, found := b.findSymbol(maphash.Bytes(internSeed, enc), enc)
	if found {
		return i
	}
	i = uint32(len(b.symOff) - 1)
	b.syms = grow(b.syms, len(enc))
	b.syms = append(b.syms, enc...)
	b.symOff = grow(b.symOff, 1)
	b.symOff = append(b.symOff, uint32(len(b.syms)))
	b.symRoot = append(b.symRoot, 0)
	b.addSymbol(slot, i)
	b.snapshot = nil
	return i
}

// run interns a run of symbols: as a child of a root it differs little
// from, else as a root.
func (b *LabelInterner) run(syms []uint32) uint32 {
	slot, off, found := b.findRun(hashRun(syms), syms)
	if found {
		b.lastRoot = rootOf(b.rests, off) + 1
		return off
	}
	encLen := 0
	for _, s := range syms {
		encLen += int(b.symOff[s+1] - b.symOff[s])
	}
	off = uint32(len(b.rests))
	if !b.appendChild(syms, encLen) {
		b.rests = grow(b.rests, 2+len(syms))
		b.rests = append(b.rests, uint32(len(syms)), uint32(encLen))
		b.rests = append(b.rests, syms...)
		for _, s := range syms {
			if r := b.symRoot[s]; r == 0 || b.rests[r-1] > uint32(len(syms)) {
				b.symRoot[s] = off + 1
			}
		}
	}
	b.lastRoot = rootOf(b.rests, off) + 1
	b.addRun(slot, off)
	b.snapshot = nil
	return off
}

// grow makes room for n more elements in s, by half its length at least:
// append grows large slices by a quarter, and after Trim (or a compaction's
// reset) a target under pod churn adds to its table at every scrape, each
// growth copying the whole array (the load test's churn profile).
func grow[S ~[]E, E any](s S, n int) S {
	if cap(s)-len(s) >= n {
		return s
	}
	return slices.Grow(s, max(n, len(s)/2))
}

// Table returns a snapshot of everything interned so far. It allocates only
// when something was added since the last call.
func (b *LabelInterner) Table() *LabelTable {
	if b.snapshot == nil {
		b.snapshot = &LabelTable{
			ID:     b.id,
			Key:    b.key,
			syms:   b.syms[:len(b.syms):len(b.syms)],
			symOff: b.symOff[:len(b.symOff):len(b.symOff)],
			rests:  b.rests[:len(b.rests):len(b.rests)],
		}
	}
	return b.snapshot
}

// Hash is LabelTable.Hash on what the interner holds, without taking a
// snapshot (which allocates when something was added since the last one).
func (b *LabelInterner) Hash(ref SeriesRef) uint64 {
	t := LabelTable{syms: b.syms, symOff: b.symOff, rests: b.rests}
	return t.Hash(ref)
}

// Size is the bytes the interner holds.
func (b *LabelInterner) Size() int { return len(b.syms) + 4*len(b.symOff) + 4*len(b.rests) }

// NeedsCompaction reports whether the interner has grown enough since its
// last compaction that much of it is probably garbage (series that went
// away leave their symbols behind). The first call sets the baseline.
func (b *LabelInterner) NeedsCompaction() bool {
	if b.liveAfterCompact == 0 {
		b.liveAfterCompact = b.Size()
		return false
	}
	return b.Size() > 2*b.liveAfterCompact+64<<10
}

// Compact starts a new table holding only the label sets refs visits, and
// rewrites those references to point into it. Snapshots taken before stay
// valid for whoever still holds them.
//
// Each old symbol and run is interned once, however many references share
// it: the new numbers are kept by old number (symbols) and offset (runs), so
// that a run's ~50 series cost one lookup, not one per symbol each. A target
// under pod churn compacts every few scrapes.
func (b *LabelInterner) Compact(refs func(visit func(*SeriesRef))) {
	old := b.Table()
	b.reset()
	// New number + 1 of each old symbol and run; 0: not met yet.
	symMap := make([]uint32, old.NumSymbols())
	runMap := make([]uint32, len(old.rests))
	sym := func(s uint32) uint32 {
		if m := symMap[s]; m != 0 {
			return m - 1
		}
		n := b.symbol(old.Symbol(s))
		symMap[s] = n + 1
		return n
	}
	refs(func(r *SeriesRef) {
		invalid := !r.Valid()
		first := sym(r.first())
		rest := runMap[r.Rest]
		if rest == 0 {
			syms := old.RestSymbols(r.Rest, &b.expand)
			run := b.scratch[:0]
			for _, s := range syms {
				run = append(run, sym(s))
			}
			b.scratch = run
			rest = b.run(run) + 1
			runMap[r.Rest] = rest
		}
		*r = SeriesRef{First: first, Rest: rest - 1}
		if invalid {
			r.First |= invalidRef
		}
	})
	b.liveAfterCompact = b.Size()
}
