package model

import (
	"bytes"
	"hash/maphash"
	"unsafe"
)

// internIndex finds a LabelInterner's symbols (or runs) by content: an
// open-addressing table of their numbers (+1; 0 is empty), at most half
// full, probed linearly and compared with the interner's own arrays, so it
// stores no key. It replaced a map[uint64]uint32 keyed by xxhash, which
// hashed each key twice (xxhash, then the map's own) and cost 20-40 bytes
// an entry where this costs 8-16: interning is a third of a first scrape
// (BenchmarkProcessCold, BenchmarkIntern).
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

// findSymbol returns the symbol whose encoding is enc, or the slot to add
// it in.
func (b *LabelInterner) findSymbol(h uint64, enc []byte) (slot int, sym uint32, ok bool) {
	x := &b.symIndex
	if len(x.slots) == 0 {
		x.slots = make([]uint32, 64)
	}
	mask := uint64(len(x.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 {
			return int(i), 0, false
		}
		if bytes.Equal(b.syms[b.symOff[s-1]:b.symOff[s]], enc) {
			return int(i), s - 1, true
		}
	}
}

// addSymbol records symbol sym, just appended, in slot (from findSymbol).
func (b *LabelInterner) addSymbol(slot int, sym uint32) {
	x := &b.symIndex
	x.slots[slot] = sym + 1
	if x.n++; 2*x.n <= len(x.slots) {
		return
	}
	x.slots = make([]uint32, 2*len(x.slots))
	mask := uint64(len(x.slots) - 1)
	for s := uint32(0); s < uint32(len(b.symOff)-1); s++ {
		i := maphash.Bytes(internSeed, b.syms[b.symOff[s]:b.symOff[s+1]]) & mask
		for x.slots[i] != 0 {
			i = (i + 1) & mask
		}
		x.slots[i] = s + 1
	}
}

// findRun returns the offset of the run syms, or the slot to add it in.
func (b *LabelInterner) findRun(h uint64, syms []uint32) (slot int, off uint32, ok bool) {
	x := &b.runIndex
	if len(x.slots) == 0 {
		x.slots = make([]uint32, 64)
	}
	mask := uint64(len(x.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 {
			return int(i), 0, false
		}
		if runEqual(b.rests, s-1, syms) {
			return int(i), s - 1, true
		}
	}
}

// addRun records the run at off, just appended, in slot (from findRun).
func (b *LabelInterner) addRun(slot int, off uint32) {
	x := &b.runIndex
	x.slots[slot] = off + 1
	if x.n++; 2*x.n <= len(x.slots) {
		return
	}
	x.slots = make([]uint32, 2*len(x.slots))
	mask := uint64(len(x.slots) - 1)
	for o := uint32(0); o < uint32(len(b.rests)); o += runWords(b.rests, o) {
		b.expand = appendRun(b.expand[:0], b.rests, o)
		i := hashRun(b.expand) & mask
		for x.slots[i] != 0 {
			i = (i + 1) & mask
		}
		x.slots[i] = o + 1
	}
}
