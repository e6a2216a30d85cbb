package podindex

import (
	"hash/maphash"
	"math/bits"
	"slices"
)

// shard holds the entries of the pod names of one shard: an open-addressing
// table of entry pointers, probed linearly from the hash of namespace and
// name and compared with the entry's own pod, so it stores no key. A
// map[podKey]*entry cost ~92 bytes a pod (a 40-byte slot, the load factor
// and its growth); this costs 8 bytes a slot at most 3/4 full, 11-21 bytes
// a pod. A snapshot shares the slots; the index copies them before the
// first change after a snapshot took them (Index.put).
type shard struct {
	slots []*entry
	n     int
}

// keySeed seeds podHash; the hashes never leave the process.
var keySeed = maphash.MakeSeed()

// podHash hashes a pod's key: the shard is taken from its top bits, the
// slot from its low ones.
func podHash(namespace, name string) uint64 {
	return maphash.String(keySeed, name) ^ bits.RotateLeft64(maphash.String(keySeed, namespace), 31)
}

func shardOf(h uint64) int { return int(h >> (64 - shardBits)) }

// find returns the entry of namespace/name, or nil.
func (s *shard) find(h uint64, namespace, name string) *entry {
	if s.n == 0 {
		return nil
	}
	mask := uint64(len(s.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		e := s.slots[i]
		if e == nil {
			return nil
		}
		if e.pod.name == name && e.pod.namespace == namespace {
			return e
		}
	}
}

// set puts e (whose pod is namespace/name) in place of the entry of that
// key, or adds it.
func (s *shard) set(h uint64, e *entry) {
	if len(s.slots) == 0 || 4*(s.n+1) > 3*len(s.slots) {
		s.grow()
	}
	mask := uint64(len(s.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		o := s.slots[i]
		if o == nil {
			s.slots[i] = e
			s.n++
			return
		}
		if o.pod.name == e.pod.name && o.pod.namespace == e.pod.namespace {
			s.slots[i] = e
			return
		}
	}
}

// remove deletes the entry of namespace/name, if any, shifting the entries
// after it back so that no probe sequence is broken (no tombstones).
func (s *shard) remove(h uint64, namespace, name string) {
	if s.n == 0 {
		return
	}
	mask := uint64(len(s.slots) - 1)
	i := h & mask
	for {
		e := s.slots[i]
		if e == nil {
			return
		}
		if e.pod.name == name && e.pod.namespace == namespace {
			break
		}
		i = (i + 1) & mask
	}
	// Backward-shift deletion: move back every following entry whose home
	// slot is not between the hole and it.
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		e := s.slots[j]
		if e == nil {
			break
		}
		home := podHash(e.pod.namespace, e.pod.name) & mask
		if (j-home)&mask >= (j-i)&mask {
			s.slots[i] = e
			i = j
		}
	}
	s.slots[i] = nil
	s.n--
	if s.n == 0 {
		s.slots = nil // a shard emptied by deletions gives its table back
	}
}

func (s *shard) grow() {
	old := s.slots
	s.slots = make([]*entry, max(8, 2*len(old)))
	s.n = 0
	for _, e := range old {
		if e != nil {
			s.set(podHash(e.pod.namespace, e.pod.name), e)
		}
	}
}

// clone returns a copy whose changes do not show in s.
func (s shard) clone() shard { return shard{slots: slices.Clone(s.slots), n: s.n} }

// all calls f with every entry.
func (s *shard) all(f func(*entry)) {
	for _, e := range s.slots {
		if e != nil {
			f(e)
		}
	}
}
