package model

import (
	"io"
	"slices"
	"sort"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/captures"
)

// TestRunsInTwoLevels: the variants of a container's labels are stored as
// edits of its run, each kind of edit decodes in place, and what is too
// different (or too short to gain) is a root of its own.
func TestRunsInTwoLevels(t *testing.T) {
	base := pairs("__name__", "m", "container", "app", "id", "/kubepods/pod1/c1", "image", "img:1",
		"job", "kubelet", "namespace", "default", "pod", "pod-1")
	with := func(ls []Label, nameValues ...string) []Label {
		out := slices.Clone(ls)
		for i := 0; i < len(nameValues); i += 2 {
			j := slices.IndexFunc(out, func(l Label) bool { return l.Name == nameValues[i] })
			switch {
			case nameValues[i+1] == "" && j >= 0:
				out = slices.Delete(out, j, j+1)
			case j >= 0:
				out[j].Value = nameValues[i+1]
			default:
				out = append(out, Label{nameValues[i], nameValues[i+1]})
			}
		}
		sort.Slice(out[1:], func(a, b int) bool { return out[1+a].Name < out[1+b].Name })
		return out
	}
	for _, tc := range []struct {
		name  string
		ls    []Label
		words int // the run's record: 2 + edits for a child, 2 + symbols for a root
	}{
		{"insert in the middle", with(base, "cpu", "total"), 2 + 1},
		{"insert at the end", with(base, "zone", "a"), 2 + 1},
		{"insert first", with(base, "a", "x"), 2 + 1},
		{"replace", with(base, "pod", "pod-2"), 2 + 1},
		{"delete", with(base, "image", ""), 2 + 1},
		{"delete the last", with(base, "pod", ""), 2 + 1},
		{"mixed", with(base, "container", "", "cpu", "0", "device", "eth0", "pod", "p"), 2 + 4},
		{"another container", with(base, "container", "db", "id", "/kubepods/pod1/c2", "image", "db:2", "pod", "pod-2", "namespace", "kube-system"), 2 + 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := NewLabelInterner(1)
			root := in.Intern(base)
			before := in.Table().RestsLen()
			ref := in.Intern(tc.ls)
			tab := in.Table()
			if got := tab.RestsLen() - before; got != tc.words {
				t.Errorf("record of %d words, want %d", got, tc.words)
			}
			if got := labelsOf(t, tab, ref); !slices.Equal(got, tc.ls) {
				t.Fatalf("decodes as %v, want %v", got, tc.ls)
			}
			enc := encodedOf(tc.ls)
			if got := tab.AppendEncoded(nil, ref); string(got) != string(enc) || tab.EncodedLen(ref) != len(enc) || tab.Hash(ref) != xxhash.Sum64(enc) {
				t.Fatal("AppendEncoded, EncodedLen or Hash disagree with the labels")
			}
			n, encLen := tab.RestLen(ref.Rest)
			var scratch []uint32
			syms := tab.RestSymbols(ref.Rest, &scratch)
			if n != len(tc.ls)-1 || encLen != len(encodedOf(tc.ls[1:])) || !slices.Equal(syms, tab.AppendRest(nil, ref.Rest)) || len(syms) != n {
				t.Fatalf("RestLen %d %d, RestSymbols %v, AppendRest %v", n, encLen, syms, tab.AppendRest(nil, ref.Rest))
			}
			// Found again, as the root is, after the other.
			if again := in.Intern(tc.ls); again != ref {
				t.Fatalf("interned again as %+v, was %+v", again, ref)
			}
			if again := in.Intern(base); again != root {
				t.Fatalf("root interned again as %+v, was %+v", again, root)
			}
		})
	}
}

// captureSets returns the label sets of a real payload as a relay builds
// them: sorted, with a target's labels added.
func captureSets(t testing.TB, name string) [][]Label {
	t.Helper()
	body, err := captures.Read(name)
	if err != nil {
		t.Fatal(err)
	}
	target := labels.FromStrings("instance", "198.18.0.10:10250", "job", "kubelet", "node", "node-a")
	p := textparse.NewPromParser(body, labels.NewSymbolTable(), false)
	var sets [][]Label
	for {
		et, err := p.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if et != textparse.EntrySeries {
			continue
		}
		var ls labels.Labels
		p.Labels(&ls)
		b := labels.NewBuilder(ls)
		target.Range(func(l labels.Label) { b.Set(l.Name, l.Value) })
		var set []Label
		b.Labels().Range(func(l labels.Label) { set = append(set, Label{l.Name, l.Value}) })
		sets = append(sets, set)
	}
	return sets
}

// TestRunsOnCaptures interns every capture's series: each decodes to its
// labels with its content hash, interning again finds it, an interner
// that met them in another order (so with other roots) hashes them alike,
// compaction keeps them, and the runs take much less than stored flat.
func TestRunsOnCaptures(t *testing.T) {
	for short, name := range captures.Files {
		t.Run(short, func(t *testing.T) {
			sets := captureSets(t, name)
			in, rev := NewLabelInterner(1), NewLabelInterner(2)
			refs := make([]SeriesRef, len(sets))
			revRefs := make([]SeriesRef, len(sets))
			for i, ls := range sets {
				refs[i] = in.Intern(ls)
			}
			for i := len(sets) - 1; i >= 0; i-- {
				revRefs[i] = rev.Intern(sets[i])
			}
			tab, revTab := in.Table(), rev.Table()
			flat := 0 // words the distinct runs take stored flat
			seen := map[uint32]bool{}
			for i, ls := range sets {
				ref := refs[i]
				enc := encodedOf(ls)
				if got := tab.AppendEncoded(nil, ref); string(got) != string(enc) {
					t.Fatalf("series %d %v: encoded %q", i, ls, got)
				}
				if tab.Hash(ref) != xxhash.Sum64(enc) || revTab.Hash(revRefs[i]) != tab.Hash(ref) || in.Hash(ref) != tab.Hash(ref) {
					t.Fatalf("series %d: hashes differ", i)
				}
				if !seen[ref.Rest] {
					seen[ref.Rest] = true
					flat += 2 + len(ls) - 1
				}
			}
			for i, ls := range sets {
				if again := in.Intern(ls); again != refs[i] {
					t.Fatalf("series %d interned again as %+v, was %+v", i, again, refs[i])
				}
			}
			if in.Table() != tab {
				t.Fatal("interning again added to the table")
			}
			t.Logf("%d series, %d runs: %d words in two levels, %d flat", len(sets), len(seen), tab.RestsLen(), flat)
			if len(sets) > 1000 && 10*tab.RestsLen() > 6*flat {
				t.Errorf("runs take %d words, %d stored flat: less than 40%% saved", tab.RestsLen(), flat)
			}
			in.Compact(func(visit func(*SeriesRef)) {
				for i := range refs {
					visit(&refs[i])
				}
			})
			ctab := in.Table()
			for i, ls := range sets {
				if got := ctab.AppendEncoded(nil, refs[i]); string(got) != string(encodedOf(ls)) {
					t.Fatalf("series %d after compaction: %q", i, got)
				}
			}
			// Compaction meets the runs in another order (each once), so it
			// may pick other roots, not many worse.
			if 50*ctab.RestsLen() > 51*tab.RestsLen() {
				t.Errorf("compaction of the live series grew the runs: %d words, was %d", ctab.RestsLen(), tab.RestsLen())
			}
		})
	}
}

// BenchmarkInternCapture interns the 1.35 capture's series into an empty
// interner: a target's first scrape, with runs in two levels.
func BenchmarkInternCapture(b *testing.B) {
	benchInternSets(b, captureSets(b, captures.Files["1_35"]))
}

// BenchmarkAppendEncoded is the encoding of every series of the 1.35
// capture from its table, runs in two levels expanded: what Hash costs a
// series created or evicted under churn.
func BenchmarkAppendEncoded(b *testing.B) {
	sets := captureSets(b, captures.Files["1_35"])
	in := NewLabelInterner(1)
	refs := make([]SeriesRef, len(sets))
	for i, ls := range sets {
		refs[i] = in.Intern(ls)
	}
	tab := in.Table()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range refs {
			buf = tab.AppendEncoded(buf[:0], r)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(refs)), "ns/series")
}
