package relay

import "github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

// entryIndex finds a target's cache entries by the hash of their raw series
// bytes. It is an open-addressing table of entry numbers: 4 bytes a slot and
// at most three quarters full, where a map[uint64]uint32 costs about 20-40
// bytes an entry. The hash itself is read from the entry (seriesEntry.key).
// Its size is any number, not a power of two (home): a kubelet's ~6.2k
// series take 10k slots, 6.7 bytes a series, not 16k.
//
// A slot's top 8 bits are a tag, 8 low bits of the hash, so that a probe
// reads the key of an entry whose tag matches only: a lookup that misses
// (every new series, under pod churn a third of a kubelet's) would read
// the keys of a whole probe run, each a cache miss in a large target. A
// target with more than 2^24-2 entries has no tags (wide).
type entryIndex struct {
	slots []uint32 // tag and entry number + 1; 0 is empty, deleted is a tombstone
	live  int
	used  int  // live + tombstones
	wide  bool // slots hold entry number + 1 alone
}

const (
	deleted  = ^uint32(0)
	tagShift = 24
	numMask  = 1<<tagShift - 1
)

// value is the slot of entry e of hash h.
func (x *entryIndex) value(h uint64, e uint32) uint32 {
	if x.wide {
		return e + 1
	}
	return uint32(h)<<tagShift | (e + 1)
}

// tagMask selects the bits of a slot that two slots of the same hash share.
func (x *entryIndex) tagMask() uint32 {
	if x.wide {
		return 0
	}
	return ^uint32(numMask)
}

// num is the entry number of slot s (neither empty nor deleted).
func (x *entryIndex) num(s uint32) uint32 {
	if x.wide {
		return s - 1
	}
	return s&numMask - 1
}

// widen drops the tags, for entry numbers that need their bits. A slot
// stays where it is: its place depends on the hash's high bits alone.
func (x *entryIndex) widen() {
	for i, s := range x.slots {
		if s != 0 && s != deleted {
			x.slots[i] = s & numMask
		}
	}
	x.wide = true
}

// home is where the probe for hash h starts (xxhash spreads the high bits
// SlotHome takes as well as the low ones).
func (x *entryIndex) home(h uint64) int { return model.SlotHome(h, len(x.slots)) }

// next is the slot after i, wrapping.
func (x *entryIndex) next(i int) int { return model.NextSlot(i, len(x.slots)) }

// get returns the entry whose key is h.
func (x *entryIndex) get(h uint64, entries *entryStore) (uint32, bool) {
	if len(x.slots) == 0 {
		return 0, false
	}
	v, m := x.value(h, 0), x.tagMask()
	for i := x.home(h); ; i = x.next(i) {
		switch s := x.slots[i]; {
		case s == 0:
			return 0, false
		case s == deleted || (s^v)&m != 0:
		default:
			if n := x.num(s); entries.at(n).key == h {
				return n, true
			}
		}
	}
}

// put makes e the entry of key h, replacing another entry of the same key
// (a 64-bit collision between series of different lengths).
func (x *entryIndex) put(h uint64, e uint32, entries *entryStore) {
	if !x.wide && e+1 >= numMask {
		x.widen() // a tagged slot of number numMask-1 would be deleted
	}
	if 4*(x.used+1) > 3*len(x.slots) {
		// Growing (or full of tombstones): half full, room for half as
		// many entries again before the next resize.
		x.resize(max(16, 2*(x.live+1)), entries)
	}
	v, m := x.value(h, e), x.tagMask()
	free := -1
	for i := x.home(h); ; i = x.next(i) {
		switch s := x.slots[i]; {
		case s == 0:
			if free < 0 {
				free = int(i)
				x.used++
			}
			x.slots[free] = v
			x.live++
			return
		case s == deleted:
			if free < 0 {
				free = int(i)
			}
		case (s^v)&m == 0 && entries.at(x.num(s)).key == h:
			x.slots[i] = v
			return
		}
	}
}

// remove forgets entry e, if it is the one indexed under h.
func (x *entryIndex) remove(h uint64, e uint32) {
	if len(x.slots) == 0 {
		return
	}
	v := x.value(h, e)
	for i := x.home(h); ; i = x.next(i) {
		switch s := x.slots[i]; s {
		case 0:
			return
		case v:
			x.slots[i] = deleted
			x.live--
			return
		}
	}
}

// rehash resizes the table for its live entries and drops tombstones,
// leaving it 3/5 full: a target's series barely change after its first
// scrape (reserve), and probes stay short at that (a successful one reads
// about 2 entries' keys, a miss 4).
func (x *entryIndex) rehash(entries *entryStore) {
	x.resize(max(16, 5*(x.live+1)/3), entries)
}

// resize moves the live entries to a table of n slots.
func (x *entryIndex) resize(n int, entries *entryStore) {
	old := x.slots
	x.slots = make([]uint32, n)
	x.live, x.used = 0, 0
	for _, s := range old {
		if s == 0 || s == deleted {
			continue
		}
		i := x.home(entries.at(x.num(s)).key)
		for x.slots[i] != 0 {
			i = x.next(i)
		}
		x.slots[i] = s
		x.live++
		x.used++
	}
}

// len is the number of entries indexed.
func (x *entryIndex) len() int { return x.live }
