package model

import (
	"bytes"
	"hash/maphash"
	"math/bits"
	"unsafe"
)

// internIndex finds a LabelInterner's symbols (or runs) by content: an
// open-addressing table of their numbers (+1; 0 is empty), probed linearly
// and compared with the interner's own arrays, so it stores no key. It
// replaced a map[uint64]uint32 keyed by xxhash, which hashed each key twice
// (xxhash, then the map's own) and cost 20-40 bytes an entry where this
// costs 4-8: interning is a third of a first scrape (BenchmarkProcessCold,
// BenchmarkIntern).
//
// Its size is any number, as the relay's entry index's: at most three
// quarters full, half full after growing (a first scrape), three fifths
// after Trim (the labels of a target barely change after its first scrape).
type internIndex struct {
	slots []uint32
	n     int
}

// internSeed seeds the hashes of internIndex, which never leave the process.
var internSeed = maphash.MakeSeed()

func hashRun(syms []uint32) uint64 {
	if len(syms) == 0 {
		return maphash.Bytes(internSeed, nil)
	}
	return maphash.Bytes(internSeed, unsafe.Slice((*byte)(unsafe.Pointer(&syms[0])), 4*len(syms)))
}

// SlotHome is where the probe for hash h starts in an open-addressing table
// of n slots: h scaled to n (its high bits), so that n need not be a power
// of two. The relay's entry index probes the same way.
func SlotHome(h uint64, n int) int {
	hi, _ := bits.Mul64(h, uint64(n))
	return int(hi)
}

// NextSlot is the slot after i in a table of n slots, wrapping.
func NextSlot(i, n int) int {
	if i++; i == n {
		return 0
	}
	return i
}

func (x *internIndex) home(h uint64) int { return SlotHome(h, len(x.slots)) }
func (x *internIndex) next(i int) int    { return NextSlot(i, len(x.slots)) }

// full reports whether the table needs to grow before one more entry.
func (x *internIndex) full() bool { return 4*(x.n+1) > 3*len(x.slots) }

// resize makes the table n slots, empty, for the caller to refill.
func (x *internIndex) resize(n int) {
	x.slots = make([]uint32, max(n, 16))
	x.n = 0
}

// place records v for hash h in the first empty slot from its home.
func (x *internIndex) place(h uint64, v uint32) {
	i := x.home(h)
	for x.slots[i] != 0 {
		i = x.next(i)
	}
	x.slots[i] = v
	x.n++
}

// findSymbol returns the symbol whose encoding is enc, or the slot to add
// it in.
func (b *LabelInterner) findSymbol(h uint64, enc []byte) (slot int, sym uint32, ok bool) {
	x := &b.symIndex
	if x.full() {
		b.resizeSymbols(2 * (x.n + 1))
	}
	for i := x.home(h); ; i = x.next(i) {
		s := x.slots[i]
		if s == 0 {
			return i, 0, false
		}
		if bytes.Equal(b.syms[b.symOff[s-1]:b.symOff[s]], enc) {
			return i, s - 1, true
		}
	}
}

// addSymbol records symbol sym, just appended, in slot (from findSymbol).
func (b *LabelInterner) addSymbol(slot int, sym uint32) {
	b.symIndex.slots[slot] = sym + 1
	b.symIndex.n++
}

// resizeSymbols rebuilds the symbol index with n slots.
func (b *LabelInterner) resizeSymbols(n int) {
	x := &b.symIndex
	x.resize(n)
	for s := uint32(0); s < uint32(len(b.symOff)-1); s++ {
		x.place(maphash.Bytes(internSeed, b.syms[b.symOff[s]:b.symOff[s+1]]), s+1)
	}
}

// findRun returns the offset of the run syms, or the slot to add it in.
func (b *LabelInterner) findRun(h uint64, syms []uint32) (slot int, off uint32, ok bool) {
	x := &b.runIndex
	if x.full() {
		b.resizeRuns(2 * (x.n + 1))
	}
	for i := x.home(h); ; i = x.next(i) {
		s := x.slots[i]
		if s == 0 {
			return i, 0, false
		}
		if runEqual(b.rests, s-1, syms) {
			return i, s - 1, true
		}
	}
}

// addRun records the run at off, just appended, in slot (from findRun).
func (b *LabelInterner) addRun(slot int, off uint32) {
	b.runIndex.slots[slot] = off + 1
	b.runIndex.n++
}

// resizeRuns rebuilds the run index with n slots.
func (b *LabelInterner) resizeRuns(n int) {
	x := &b.runIndex
	x.resize(n)
	for o := uint32(0); o < uint32(len(b.rests)); o += runWords(b.rests, o) {
		b.expand = appendRun(b.expand[:0], b.rests, o)
		x.place(hashRun(b.expand), o+1)
	}
}

// trimIndexes resizes both indexes to three fifths full if that is smaller
// by more than a sixteenth.
func (b *LabelInterner) trimIndexes() {
	if n := 5 * (b.symIndex.n + 1) / 3; spare(n, len(b.symIndex.slots)) {
		b.resizeSymbols(n)
	}
	if n := 5 * (b.runIndex.n + 1) / 3; spare(n, len(b.runIndex.slots)) {
		b.resizeRuns(n)
	}
}
