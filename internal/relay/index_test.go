package relay

import (
	"math/rand/v2"
	"testing"
)

// TestEntryIndexAgainstAMap drives the index and a map with the same random
// puts and removes (keys drawn from a small range, and some colliding in the
// high bits, so probing, tombstones and rehashing all happen), with tags and
// then without.
func TestEntryIndexAgainstAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var x entryIndex
	var entries entryStore
	want := map[uint64]uint32{}
	for step := range 200000 {
		if step == 100000 {
			x.widen() // as for a target past 2^24 entries: the same answers without tags
		}
		h := mix(uint64(rng.IntN(5000)))
		if rng.IntN(50) == 0 {
			h &^= 0xffff << 48 // high bits shared with others: long probe runs
		}
		if e, ok := want[h]; ok && rng.IntN(2) == 0 {
			x.remove(h, e)
			delete(want, h)
		} else {
			e := entries.add()
			entries.at(e).key = h
			x.put(h, e, &entries)
			want[h] = e
		}
		if step%1000 == 0 {
			if x.len() != len(want) {
				t.Fatalf("step %d: %d indexed, want %d", step, x.len(), len(want))
			}
			for h, e := range want {
				if got, ok := x.get(h, &entries); !ok || got != e {
					t.Fatalf("step %d: get(%d) = %d, %v; want %d", step, h, got, ok, e)
				}
			}
			if _, ok := x.get(1<<60, &entries); ok {
				t.Fatal("found a key never put")
			}
		}
	}
	if len(x.slots) > 8*len(want)+16 {
		t.Fatalf("%d slots for %d entries", len(x.slots), len(want))
	}
}

// mix spreads small numbers over 64 bits, as xxhash spreads series.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// A kubelet's ~6.2k series, reserved for by its first scrape, fit 10.3k
// slots (3/5 full, 6.7 bytes a series); put after put, 12.4k at most.
func TestEntryIndexSize(t *testing.T) {
	for _, reserved := range []bool{true, false} {
		var x entryIndex
		var entries entryStore
		if reserved {
			x.reserve(6200, &entries)
		}
		for i := range 6200 {
			e := entries.add()
			entries.at(e).key = mix(uint64(i))
			x.put(entries.at(e).key, e, &entries)
		}
		want := 5 * 6201 / 3
		if !reserved {
			want = 2*6200 + 16
		}
		if n := len(x.slots); n > want || x.len() != 6200 {
			t.Fatalf("reserved %v: %d slots for %d entries, want at most %d", reserved, n, x.len(), want)
		}
	}
}
