package relay

// entryIndex finds a target's cache entries by the hash of their raw series
// bytes. It is an open-addressing table of entry numbers: 4 bytes a slot and
// at most half full, where a map[uint64]uint32 costs about 20-40 bytes an
// entry. The hash itself is read from the entry (seriesEntry.key).
type entryIndex struct {
	slots []uint32 // entry number + 1; 0 is empty, deleted is a tombstone
	live  int
	used  int // live + tombstones
}

const deleted = ^uint32(0)

// get returns the entry whose key is h.
func (x *entryIndex) get(h uint64, entries *entryStore) (uint32, bool) {
	if len(x.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(x.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
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
	if 2*(x.used+1) > len(x.slots) {
		x.rehash(entries)
	}
	mask := uint64(len(x.slots) - 1)
	free := -1
	for i := h & mask; ; i = (i + 1) & mask {
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
	mask := uint64(len(x.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
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

// rehash resizes the table for its live entries and drops tombstones. The
// table stays at most half full (put), so probes stay short; it is sized
// for 2.5 slots an entry, not 4: a kubelet's ~6.2k series take 16k slots
// (10 bytes a series), not 32k.
func (x *entryIndex) rehash(entries *entryStore) {
	n := 16
	for n < 2*(x.live+1)+(x.live+1)/2 {
		n *= 2
	}
	old := x.slots
	x.slots = make([]uint32, n)
	x.live, x.used = 0, 0
	mask := uint64(n - 1)
	for _, s := range old {
		if s == 0 || s == deleted {
			continue
		}
		i := entries.at(s-1).key & mask
		for x.slots[i] != 0 {
			i = (i + 1) & mask
		}
		x.slots[i] = s
		x.live++
		x.used++
	}
}

// len is the number of entries indexed.
func (x *entryIndex) len() int { return x.live }
