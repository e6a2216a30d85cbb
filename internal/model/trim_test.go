package model

import (
	"fmt"
	"testing"
)

func TestTrimKeepsReferences(t *testing.T) {
	b := NewLabelInterner(1)
	var refs []SeriesRef
	// Until the run index has just grown (half full), past 2,000 series.
	for i := 0; i < 2000 || 2*b.runIndex.n > len(b.runIndex.slots); i++ {
		refs = append(refs, b.Intern([]Label{{"__name__", "m"}, {"a", fmt.Sprint(i % 70)}, {"b", fmt.Sprint(i)}}))
	}
	before := b.Table()
	if !spare(len(b.rests), cap(b.rests)) && !spare(len(b.syms), cap(b.syms)) {
		t.Fatal("the test's appends left no spare capacity: it proves nothing")
	}
	symSlots, runSlots := len(b.symIndex.slots), len(b.runIndex.slots)
	b.Trim()
	if cap(b.syms) != len(b.syms) || cap(b.symOff) != len(b.symOff) || cap(b.rests) != len(b.rests) {
		t.Fatalf("after Trim: syms %d/%d, symOff %d/%d, rests %d/%d", len(b.syms), cap(b.syms), len(b.symOff), cap(b.symOff), len(b.rests), cap(b.rests))
	}
	// The indexes: three fifths full if they were emptier (the run index
	// was half full), else as they were.
	for _, x := range []struct {
		name          string
		before, after int
		n             int
	}{{"symbol", symSlots, len(b.symIndex.slots), b.symIndex.n}, {"run", runSlots, len(b.runIndex.slots), b.runIndex.n}} {
		want := x.before
		if n := 5 * (x.n + 1) / 3; spare(n, x.before) {
			want = n
		}
		if x.after != want || x.name == "run" && x.after >= x.before {
			t.Errorf("%s index: %d slots for %d entries after Trim, %d before", x.name, x.after, x.n, x.before)
		}
	}
	after := b.Table()
	if after == before || after.ID != before.ID {
		t.Fatalf("Trim: table %p id %d, before %p id %d: want a new snapshot, same ID", after, after.ID, before, before.ID)
	}
	for i, r := range refs {
		if got, want := string(after.AppendEncoded(nil, r)), string(before.AppendEncoded(nil, r)); got != want {
			t.Fatalf("series %d: %q after Trim, %q before", i, got, want)
		}
	}
	// Interning goes on: the same labels give the same reference.
	if r := b.Intern([]Label{{"__name__", "m"}, {"a", "5"}, {"b", "5"}}); r != refs[5] {
		t.Fatalf("after Trim, interning series 5 again gave %v, want %v", r, refs[5])
	}
}
