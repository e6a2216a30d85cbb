package podindex

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestShardMatchesMap runs random sets and removals (with many names shared
// by several namespaces, and tables kept small so that probe sequences run
// into each other and wrap) against a map, and checks every key after each
// step, and that a clone is not changed by later writes.
func TestShardMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var s shard
	want := map[podKey]*entry{}
	var keys []podKey
	for ns := range 4 {
		for i := range 60 {
			keys = append(keys, podKey{fmt.Sprintf("ns-%d", ns), fmt.Sprintf("pod-%d", i)})
		}
	}
	check := func(step int, s *shard, want map[podKey]*entry) {
		t.Helper()
		for _, k := range keys {
			if got := s.find(podHash(k.namespace, k.name), k.namespace, k.name); got != want[k] {
				t.Fatalf("step %d: %v: got %p, want %p", step, k, got, want[k])
			}
		}
		if s.n != len(want) {
			t.Fatalf("step %d: %d entries, want %d", step, s.n, len(want))
		}
		n := 0
		s.all(func(*entry) { n++ })
		if n != len(want) {
			t.Fatalf("step %d: all visits %d entries, want %d", step, n, len(want))
		}
	}
	var frozen shard
	var frozenWant map[podKey]*entry
	for step := range 20000 {
		k := keys[rng.IntN(len(keys))]
		h := podHash(k.namespace, k.name)
		// Bias towards removal once full, so the table fills and empties.
		if rng.IntN(100) < 45+len(want)/10 {
			s.remove(h, k.namespace, k.name)
			delete(want, k)
		} else {
			e := &entry{pod: &pod{namespace: k.namespace, name: k.name}}
			s.set(h, e)
			want[k] = e
		}
		if step%97 == 0 {
			check(step, &s, want)
		}
		if step == 5000 {
			frozen, frozenWant = s.clone(), map[podKey]*entry{}
			for k, e := range want {
				frozenWant[k] = e
			}
		}
	}
	check(-1, &s, want)
	check(-2, &frozen, frozenWant)
}
