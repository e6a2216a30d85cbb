package model

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// labelsOf decodes a series of a table.
func labelsOf(t testing.TB, tab *LabelTable, ref SeriesRef) []Label {
	t.Helper()
	var out []Label
	it := tab.Labels(ref)
	for it.Next() {
		out = append(out, Label{Name: string(it.Name), Value: string(it.Value)})
	}
	if it.Err() {
		t.Fatalf("malformed labels in table %d ref %+v", tab.ID, ref)
	}
	return out
}

func encodedOf(ls []Label) []byte {
	var b []byte
	for _, l := range ls {
		b = AppendLabel(b, l.Name, l.Value)
	}
	return b
}

// podSeries is a cAdvisor-like label set: metric name first, then the
// labels shared by a container's series.
func podSeries(metric string, pod, container int) []Label {
	return []Label{
		{"__name__", metric},
		{"container", fmt.Sprint("c", container)},
		{"id", fmt.Sprintf("/kubepods/burstable/pod%d/%064d", pod, container)},
		{"job", "kubelet"},
		{"namespace", "default"},
		{"pod", fmt.Sprint("pod-", pod)},
	}
}

func TestInternDedupesSymbolsAndRuns(t *testing.T) {
	in := NewLabelInterner(1)
	metrics := []string{"container_cpu_usage_seconds_total", "container_memory_rss", "container_fs_reads_total"}
	refs := map[string]SeriesRef{}
	for _, m := range metrics {
		for c := range 4 {
			refs[fmt.Sprint(m, c)] = in.Intern(podSeries(m, 1, c))
		}
	}
	tab := in.Table()
	// 3 names + per container: container, id; shared: job, namespace, pod.
	if got, want := tab.NumSymbols(), 3+4*2+3; got != want {
		t.Fatalf("%d symbols, want %d", got, want)
	}
	// One run per container, shared by the container's three metrics.
	for c := range 4 {
		r := refs[fmt.Sprint(metrics[0], c)].Rest
		for _, m := range metrics[1:] {
			if got := refs[fmt.Sprint(m, c)].Rest; got != r {
				t.Fatalf("container %d: %s has run %d, %s run %d", c, metrics[0], r, m, got)
			}
		}
		if n, encLen := tab.RestLen(r); n != 5 || encLen != len(encodedOf(podSeries("x", 1, c)[1:])) {
			t.Fatalf("run of %d symbols, %d bytes", n, encLen)
		}
	}
	// Interning again finds everything: same refs, no new snapshot.
	for _, m := range metrics {
		for c := range 4 {
			if ref := in.Intern(podSeries(m, 1, c)); ref != refs[fmt.Sprint(m, c)] {
				t.Fatalf("%s/%d interned again as %+v, was %+v", m, c, ref, refs[fmt.Sprint(m, c)])
			}
		}
	}
	if in.Table() != tab {
		t.Fatal("Table() allocated a new snapshot although nothing was added")
	}
	for k, ref := range refs {
		if !ref.Valid() {
			t.Fatalf("%s invalid", k)
		}
		ls := labelsOf(t, tab, ref)
		enc := tab.AppendEncoded(nil, ref)
		if string(enc) != string(encodedOf(ls)) || tab.EncodedLen(ref) != len(enc) {
			t.Fatalf("%s: AppendEncoded/EncodedLen disagree with the labels", k)
		}
	}
}

func TestTableSnapshots(t *testing.T) {
	in := NewLabelInterner(42)
	t0 := in.Table()
	if t0.NumSymbols() != 0 || t0.RestsLen() != 0 || t0.Key != 42 {
		t.Fatalf("empty table: %d symbols, %d rests, key %d", t0.NumSymbols(), t0.RestsLen(), t0.Key)
	}
	if in.Table() != t0 {
		t.Fatal("Table() twice gave two snapshots")
	}
	var sets [][]Label
	var refs []SeriesRef
	var tables []*LabelTable
	for round := range 50 {
		for c := range 3 {
			ls := podSeries(fmt.Sprint("m", round%7), round, c)
			sets = append(sets, ls)
			refs = append(refs, in.Intern(ls))
		}
		tab := in.Table()
		if len(tables) > 0 && tab == tables[len(tables)-1] {
			t.Fatalf("round %d: no new snapshot after adding series", round)
		}
		if tab.ID != t0.ID || tab.Key != 42 {
			t.Fatalf("snapshot ID %d key %d, want %d and 42", tab.ID, tab.Key, t0.ID)
		}
		tables = append(tables, tab)
	}
	// Every ref means the same in the snapshot taken after it and in every
	// later one; older snapshots are unchanged (append-only).
	for i, ref := range refs {
		for _, tab := range tables[i/3:] {
			if got := labelsOf(t, tab, ref); !slices.Equal(got, sets[i]) {
				t.Fatalf("ref %d in snapshot %p: %v, want %v", i, tab, got, sets[i])
			}
		}
	}
	for i, tab := range tables[:len(tables)-1] {
		if tab.NumSymbols() > tables[i+1].NumSymbols() || tab.RestsLen() > tables[i+1].RestsLen() {
			t.Fatal("a later snapshot is smaller")
		}
	}
	if got := labelsOf(t, tables[0], refs[0]); !slices.Equal(got, sets[0]) {
		t.Fatal("the first snapshot changed")
	}
}

// TestSnapshotsReadWhileInterning reads snapshots from other goroutines
// while the interner keeps appending (run with -race).
func TestSnapshotsReadWhileInterning(t *testing.T) {
	in := NewLabelInterner(1)
	type handoff struct {
		tab  *LabelTable
		ref  SeriesRef
		want []byte
	}
	ch := make(chan handoff, 16)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			var seen []handoff
			for h := range ch {
				seen = append(seen, h)
				for _, s := range seen { // old snapshots stay readable
					if got := s.tab.AppendEncoded(nil, s.ref); string(got) != string(s.want) {
						t.Errorf("snapshot changed under a reader")
						return
					}
				}
			}
		})
	}
	for i := range 400 {
		ls := podSeries(fmt.Sprint("m", i%13), i/13, i%5)
		ref := in.Intern(ls)
		ch <- handoff{tab: in.Table(), ref: ref, want: encodedOf(ls)}
	}
	close(ch)
	wg.Wait()
}

func TestHashIsContentBased(t *testing.T) {
	a, b := NewLabelInterner(1), NewLabelInterner(2)
	rng := rand.New(rand.NewPCG(1, 1))
	var sets [][]Label
	for p := range 5 {
		for c := range 4 {
			for _, m := range []string{"x", "y"} {
				sets = append(sets, podSeries(m, p, c))
			}
		}
	}
	// b interns in another order, and other sets first, so the same set
	// has other symbol indexes and run offsets in b.
	for i := range 7 {
		b.Intern(podSeries("other", 100+i, i))
	}
	order := rng.Perm(len(sets))
	refsB := make([]SeriesRef, len(sets))
	for _, i := range order {
		refsB[i] = b.Intern(sets[i])
	}
	hashes := map[uint64]int{}
	differentRefs := 0
	for i, ls := range sets {
		ra := a.Intern(ls)
		ta, tb := a.Table(), b.Table()
		ha, hb := ta.Hash(ra), tb.Hash(refsB[i])
		if ha != hb {
			t.Fatalf("set %d: hash %x in one table, %x in the other", i, ha, hb)
		}
		if ha != xxhash.Sum64(encodedOf(ls)) {
			t.Fatalf("set %d: hash is not that of the encoding", i)
		}
		if ra != refsB[i] {
			differentRefs++
		}
		if j, dup := hashes[ha]; dup {
			t.Fatalf("sets %d and %d have the same hash", j, i)
		}
		hashes[ha] = i
	}
	if differentRefs == 0 {
		t.Fatal("test is void: the refs are the same in both tables")
	}
}

func TestLabelIterOverTable(t *testing.T) {
	in := NewLabelInterner(1)
	long := podSeries("container_memory_working_set_bytes", 7, 3)
	long = append(long, Label{"zz_long", string(make([]byte, 300))})
	for _, ls := range [][]Label{long, pairs("__name__", "up"), nil} {
		ref := in.Intern(ls)
		tab := in.Table()
		it := tab.Labels(ref)
		i := 0
		for it.Next() {
			if i >= len(ls) || string(it.Name) != ls[i].Name || string(it.Value) != ls[i].Value {
				t.Fatalf("label %d: %s=%q, want %v", i, it.Name, it.Value, ls)
			}
			i++
		}
		if it.Err() || i != len(ls) {
			t.Fatalf("iterated %d of %d labels, err %v", i, len(ls), it.Err())
		}
		if it.Next() {
			t.Fatal("Next after the end")
		}
	}
	// The iterator over an encoding walks the same labels.
	it := LabelIter{b: encodedOf(long)}
	n := 0
	for it.Next() {
		n++
	}
	if n != len(long) || it.Err() {
		t.Fatalf("LabelIter over encodings: %d labels, err %v", n, it.Err())
	}
}

func TestCompact(t *testing.T) {
	in := NewLabelInterner(9)
	type kept struct {
		ls  []Label
		ref SeriesRef
	}
	var live []kept
	// Churn: pods come and go; only the last ones stay live.
	for p := range 40 {
		for c := range 3 {
			for _, m := range []string{"a", "b"} {
				ls := podSeries(m, p, c)
				ref := in.Intern(ls)
				if p >= 35 {
					live = append(live, kept{ls, ref})
				}
			}
		}
	}
	bad := pairs("job", "x", "__name__", "bad")
	live = append(live, kept{bad, in.Intern(bad)}, kept{nil, in.Intern(nil)})
	old := in.Table()
	before := in.Size()
	oldRefs := make([]SeriesRef, len(live))
	for i := range live {
		oldRefs[i] = live[i].ref
	}
	// Two holders of one ref: both are rewritten, to the same new ref.
	dup := live[0].ref

	in.Compact(func(visit func(*SeriesRef)) {
		for i := range live {
			visit(&live[i].ref)
		}
		visit(&dup)
	})
	tab := in.Table()
	if tab.ID == old.ID || tab.Key != old.Key {
		t.Fatalf("compacted table: ID %d (was %d), key %d (was %d)", tab.ID, old.ID, tab.Key, old.Key)
	}
	if in.Size() >= before/4 {
		t.Fatalf("size %d after compaction, %d before", in.Size(), before)
	}
	if dup != live[0].ref {
		t.Fatalf("two holders of one ref rewritten to %+v and %+v", dup, live[0].ref)
	}
	for i, k := range live {
		if got := labelsOf(t, tab, k.ref); !slices.Equal(got, k.ls) {
			t.Fatalf("set %d after compaction: %v, want %v", i, got, k.ls)
		}
		if k.ref.Valid() != oldRefs[i].Valid() {
			t.Fatalf("set %d: validity changed", i)
		}
		if tab.Hash(k.ref) != old.Hash(oldRefs[i]) {
			t.Fatalf("set %d: hash changed", i)
		}
		// The old snapshot still decodes the old refs.
		if got := labelsOf(t, old, oldRefs[i]); !slices.Equal(got, k.ls) {
			t.Fatalf("set %d in the old snapshot: %v", i, got)
		}
		// Interning after compaction finds the compacted sets.
		if ref := in.Intern(k.ls); ref != k.ref {
			t.Fatalf("set %d interned after compaction as %+v, compacted to %+v", i, ref, k.ref)
		}
	}
	if in.Table() != tab {
		t.Fatal("re-interning live sets after compaction added something")
	}
	// New sets after compaction go into the new lineage.
	ref := in.Intern(podSeries("new", 99, 0))
	if tab2 := in.Table(); tab2.ID != tab.ID || !slices.Equal(labelsOf(t, tab2, ref), podSeries("new", 99, 0)) {
		t.Fatal("interning after compaction")
	}
}

func TestNeedsCompaction(t *testing.T) {
	in := NewLabelInterner(1)
	for c := range 20 {
		in.Intern(podSeries("m", 0, c))
	}
	if in.NeedsCompaction() {
		t.Fatal("first call: the baseline, not a compaction")
	}
	p := 1
	for ; !in.NeedsCompaction(); p++ {
		for c := range 20 {
			in.Intern(podSeries("m", p, c))
		}
		if p > 10_000 {
			t.Fatal("never needs compaction")
		}
	}
	if in.Size() < 64<<10 {
		t.Fatalf("needs compaction at only %d bytes", in.Size())
	}
	var live []SeriesRef
	for c := range 20 {
		live = append(live, in.Intern(podSeries("m", p, c)))
	}
	in.Compact(func(visit func(*SeriesRef)) {
		for i := range live {
			visit(&live[i])
		}
	})
	if in.NeedsCompaction() {
		t.Fatal("needs compaction right after compacting")
	}
}

// TestTableSlicesAreCapped: appending to what Symbol and RestSymbols return must
// not write into the table, which other goroutines read.
func TestTableSlicesAreCapped(t *testing.T) {
	in := NewLabelInterner(1)
	a := in.Intern(podSeries("a", 1, 1))
	b := in.Intern(podSeries("b", 2, 2))
	tab := in.Table()
	wantA, wantB := tab.AppendEncoded(nil, a), tab.AppendEncoded(nil, b)
	sym := tab.Symbol(a.First)
	_ = append(sym, "garbage"...)
	syms := tab.RestSymbols(a.Rest, new([]uint32))
	_ = append(syms, 0, 0, 0, 0)
	if got := tab.AppendEncoded(nil, a); string(got) != string(wantA) {
		t.Fatal("appending to a symbol changed the table")
	}
	if got := tab.AppendEncoded(nil, b); string(got) != string(wantB) {
		t.Fatal("appending to a run changed the table")
	}
}

// TestInternCollisions fills the index until symbols and runs share
// slots (it probes linearly and is at most three quarters full), and through
// several resizes: every set keeps its own reference, decodes as itself,
// and interning it again adds nothing.
func TestInternCollisions(t *testing.T) {
	in := NewLabelInterner(1)
	const n = 3000
	sets := make([][]Label, n)
	refs := make([]SeriesRef, n)
	for i := range sets {
		sets[i] = pairs("__name__", fmt.Sprintf("m%d", i%97), "job", fmt.Sprintf("j%d", i%13), "pod", fmt.Sprintf("p%d", i))
		refs[i] = in.Intern(sets[i])
	}
	tab := in.Table()
	seen := map[SeriesRef]int{}
	for i, ref := range refs {
		if j, ok := seen[ref]; ok {
			t.Fatalf("sets %d and %d share the reference %+v", j, i, ref)
		}
		seen[ref] = i
		if got := labelsOf(t, tab, ref); !slices.Equal(got, sets[i]) {
			t.Fatalf("set %d decodes as %v, want %v", i, got, sets[i])
		}
	}
	if got, want := tab.NumSymbols(), 97+13+n; got != want {
		t.Fatalf("%d symbols, want %d", got, want)
	}
	// The slots of the index: some symbols had to probe past others.
	home := map[int]bool{}
	shared := false
	for s := range uint32(tab.NumSymbols()) {
		h := in.symIndex.home(maphash.Bytes(internSeed, tab.Symbol(s)))
		shared = shared || home[h]
		home[h] = true
	}
	if !shared {
		t.Fatal("no two symbols share a slot: the test does not exercise probing")
	}
	for i, set := range sets {
		if again := in.Intern(set); again != refs[i] {
			t.Fatalf("set %d interned again as %+v, was %+v", i, again, refs[i])
		}
	}
	if in.Table() != tab {
		t.Fatal("interning the sets again added to the table")
	}
}

// FuzzIntern interns a sequence of label sets drawn from a small alphabet,
// so that consecutive sets share labels, names and values in every way
// (the interner compares a set with the last one before it looks labels
// up): sorted or not, names twice, empty values, empty sets, compactions
// in between. Every reference must decode to its set, be marked invalid
// exactly when the set breaks the rules, and two sets must get the same
// reference exactly when they are equal.
func FuzzIntern(f *testing.F) {
	f.Add([]byte{0x01, 0x12, 0x23, 0x34, 0xff, 0x01, 0x12, 0x24, 0x34, 0xff, 0x02, 0x12})
	f.Add([]byte{0x00, 0x11, 0x22, 0xff, 0x00, 0x11, 0x22, 0xff, 0x00, 0x11, 0x23, 0xfe, 0x00, 0x11, 0x22})
	f.Add([]byte{0x31, 0x20, 0x11, 0xff, 0x11, 0x20, 0x31, 0xff, 0x11, 0x11, 0xff, 0xff, 0x15, 0x25})
	// Variants of one set: a value replaced, a label left out, one added
	// (runs stored as edits of another, runs.go).
	f.Add([]byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0xff, 0x00, 0x11, 0x22, 0x34, 0x44, 0x55, 0xff,
		0x00, 0x11, 0x22, 0x33, 0x55, 0xff, 0x00, 0x11, 0x13, 0x22, 0x33, 0x44, 0x55, 0xfe, 0x00, 0x11, 0x22, 0x33, 0x44, 0x56})
	names := []string{"__name__", "container", "id", "namespace", "pod", "team", "", "9x"}
	values := []string{"a", "b", "", "container_cpu_usage_seconds_total", "/kubepods/pod1", "é", "x\x00y", "a"}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Each byte is a label: name (high nibble, mod 8) and value (low);
		// 0xff ends a set, 0xfe ends it and compacts.
		var sets [][]Label
		var compactAfter []bool
		cur := []Label{}
		for i, c := range data {
			if c >= 0xfe || i == len(data)-1 {
				if c < 0xfe {
					cur = append(cur, Label{Name: names[c>>4&7], Value: values[c&7]})
				}
				sets, compactAfter = append(sets, cur), append(compactAfter, c == 0xfe)
				cur = []Label{}
				continue
			}
			cur = append(cur, Label{Name: names[c>>4&7], Value: values[c&7]})
		}
		in := NewLabelInterner(1)
		refs := make([]SeriesRef, len(sets))
		for i, ls := range sets {
			refs[i] = in.Intern(ls)
			if compactAfter[i] {
				in.Compact(func(visit func(*SeriesRef)) {
					for k := range refs[:i+1] {
						visit(&refs[k])
					}
				})
			}
		}
		tab := in.Table()
		for i, ls := range sets {
			got := labelsOf(t, tab, refs[i])
			if len(ls) == 0 {
				if refs[i].Valid() || len(got) != 0 {
					t.Fatalf("set %d: empty set gave %+v (valid %v)", i, got, refs[i].Valid())
				}
				continue
			}
			if !slices.Equal(got, ls) {
				t.Fatalf("set %d: %q decodes to %q", i, ls, got)
			}
			if refs[i].Valid() != validLabels(ls) {
				t.Fatalf("set %d: %q valid %v, want %v", i, ls, refs[i].Valid(), validLabels(ls))
			}
			for k := range i {
				if eq := slices.Equal(sets[k], ls); eq != (refs[k] == refs[i]) {
					t.Fatalf("sets %d %q and %d %q: equal %v, references %+v %+v", k, sets[k], i, ls, eq, refs[k], refs[i])
				}
			}
		}
	})
}

// Intern looks for a set's symbols among the last set's first (near the
// same position): sets of shifting shapes, one after the other, encode as
// their labels, and a set interned again (after others) gets the same
// reference, as in a fresh interner.
func TestInternAfterSimilarSets(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	names := []string{"__name__", "a", "b", "c", "d", "e", "f", "g"}
	var sets [][]Label
	for range 3000 {
		var ls []Label
		for _, n := range names {
			if n != "__name__" && rng.IntN(4) == 0 {
				continue // a shape with this label missing
			}
			ls = append(ls, Label{Name: n, Value: fmt.Sprint(rng.IntN(3))})
		}
		sets = append(sets, ls)
	}
	b, fresh := NewLabelInterner(1), NewLabelInterner(2)
	refs := map[string]SeriesRef{}
	for i, ls := range sets {
		r := b.Intern(ls)
		want := make([]byte, 0, 64)
		for _, l := range ls {
			want = AppendLabel(want, l.Name, l.Value)
		}
		if got := b.Table().AppendEncoded(nil, r); string(got) != string(want) {
			t.Fatalf("set %d %v: encoded %q, want %q", i, ls, got, want)
		}
		if prev, ok := refs[string(want)]; ok && prev != r {
			t.Fatalf("set %d %v: reference %v, earlier %v", i, ls, r, prev)
		}
		refs[string(want)] = r
		if i%7 == 0 { // the same set in an interner that saw only every 7th
			fr := fresh.Intern(ls)
			if got, want := fresh.Table().AppendEncoded(nil, fr), b.Table().AppendEncoded(nil, r); string(got) != string(want) {
				t.Fatalf("set %d: %q in a fresh interner, %q", i, got, want)
			}
		}
	}
}
