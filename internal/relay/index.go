package relay

import "math/bits"

// entryIndex finds a target's cache entries by the hash of their raw series
// bytes. It is an open-addressing table of entry numbers: 4 bytes a slot and
// at most three quarters full, where a map[uint64]uint32 costs about 20-40
// bytes an entry. The hash itself is read from the entry (seriesEntry.key).
// Its size is any number, not a power of two (home): a kubelet's ~6.2k
// series take 10k slots, 6.7 bytes a series, not 16k.
type entryIndex struct {
	slots []uint32 // entry number + 1; 0 is empty, deleted is a tombstone
	live  int
	used  int // live + tombstones
}

const deleted = ^uint32(0)

// home is where the probe for hash h starts: h scaled to the table's size
// (its high bits; xxhash spreads them as well as the low ones).
func (x *entryIndex) home(h uint64) int {
	hi, _ := bits.Mul64(h, uint64(len(x.slots)))
	return int(hi)
}

// next is the slot after i, wrapping.
func (x *entryIndex) next(i int) int {
	if i++; i == len(x.slots) {
		return 0
	}
	return i
}

// get returns the entry whose key is h.
func (x *entryIndex) get(h uint64, entries *entryStore) (uint32, bool) {
	if len(x.slots) == 0 {
		return 0, false
	}
	for i := x.home(h); ; i = x.next(i) {
		switch s := x.slots[i]; s {
		case 0:
			return 0, false
		case deleted:
		default:
			if entries.at(s-1).key == h {
				return s - 1, true
			}
		}
	}
}

// put makes e the entry of key h, replacing another entry of the same key
// (a 64-bit collision between series of different lengths).
func (x *entryIndex) put(h uint64, e uint32, entries *entryStore) {
	if 4*(x.used+1) > 3*len(x.slots) {
		// Growing (or full of tombstones): half full, room for half as
		// many entries again before the next resize.
		x.resize(max(16, 2*(x.live+1)), entries)
	}
	free := -1
	for i := x.home(h); ; i = x.next(i) {
		switch s := x.slots[i]; s {
		case 0:
			if free < 0 {
				free = int(i)
				x.used++
			}
			x.slots[free] = e + 1
			x.live++
			return
		case deleted:
			if free < 0 {
				free = int(i)
			}
		default:
			if entries.at(s-1).key == h {
				x.slots[i] = e + 1
				return
			}
		}
	}
}

// remove forgets entry e, if it is the one indexed under h.
func (x *entryIndex) remove(h uint64, e uint32) {
	if len(x.slots) == 0 {
		return
	}
	for i := x.home(h); ; i = x.next(i) {
		switch s := x.slots[i]; s {
		case 0:
			return
		case e + 1:
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
		i := x.home(entries.at(s - 1).key)
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
