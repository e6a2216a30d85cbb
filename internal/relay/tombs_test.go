package relay

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relabeling"
)

// The grouped store answers as one map of every tombstone would: for each
// hash the latest timestamp of those not yet expired, over random writes
// (hashes written again, pods of every size), sweeps and lookups.
func TestTombstonesAgainstAMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	type want struct{ t, expires int64 }
	ref := map[uint64][]want{} // every write of a hash
	podOf := func(h uint64) uint64 { return h % 7 * 1000 }
	var s tombstones
	now := int64(0)
	for step := range 20000 {
		now += int64(r.IntN(3))
		switch op := r.IntN(100); {
		case op < 60:
			// Hashes of a small range, so that some are written again,
			// and most in pod 0's group, so that it needs its index.
			h := uint64(r.IntN(400))
			if r.IntN(2) == 0 {
				h = h / 7 * 7
			}
			tb := int64(r.IntN(1000))
			exp := now + 40 // as the relay writes them: expiry never decreases
			s.add(podOf(h), h, tb, exp)
			ref[h] = append(ref[h], want{tb, exp})
		case op < 62:
			s.sweep(now)
			for h, ws := range ref {
				// The store drops a group's oldest: keep the model's
				// writes in that order, expiry not decreasing.
				k := 0
				for k < len(ws) && now > ws[k].expires {
					k++
				}
				if ref[h] = ws[k:]; len(ref[h]) == 0 {
					delete(ref, h)
				}
			}
		default:
			h := uint64(r.IntN(450))
			wantT, wantOK := int64(0), false
			for _, w := range ref[h] {
				if !wantOK || w.t > wantT {
					wantT, wantOK = w.t, true
				}
			}
			gotT, gotOK := int64(0), false
			if g := s.group(podOf(h)); g != nil {
				gotT, gotOK = g.find(h)
			}
			if gotT != wantT || gotOK != wantOK {
				t.Fatalf("step %d: hash %d: got %d %v, want %d %v", step, h, gotT, gotOK, wantT, wantOK)
			}
		}
		n := 0
		for _, ws := range ref {
			n += len(ws)
		}
		if s.len() != n {
			t.Fatalf("step %d: %d tombstones, want %d", step, s.len(), n)
		}
	}
}

func TestTombstonesCap(t *testing.T) {
	var s tombstones
	for i := range 1000 {
		s.add(uint64(i%10), uint64(i), int64(i), int64(i))
	}
	s.capAt(250)
	if s.len() != 250 {
		t.Fatalf("%d tombstones after capAt(250)", s.len())
	}
	n := 0
	s.each(func(uint64, tomb) { n++ })
	if n != 250 {
		t.Fatalf("each gave %d tombstones, len says 250", n)
	}
}

// backPayload is a target writing its own timestamps: pods' series, two
// families each (the second built from the first's label part, runmemo.go).
// A pod's container is named after it, but p9's is p1's.
func backPayload(ts int64, pods ...string) []byte {
	var b strings.Builder
	for _, fam := range []string{"m_a", "m_b"} {
		fmt.Fprintf(&b, "# TYPE %s gauge\n", fam)
		for _, p := range pods {
			ctr := "c-" + strings.Replace(p, "p9", "p1", 1)
			fmt.Fprintf(&b, "%s{container=%q,namespace=\"default\",pod=%q} 1 %d\n", fam, ctr, p, ts)
		}
		fmt.Fprintf(&b, "%s{node_level=\"yes\"} 1 %d\n", fam, ts) // no pod, no namespace
	}
	return []byte(b.String())
}

// A series that comes back after its entry was evicted keeps its last
// timestamp (its tombstone's), whichever way its entry is rebuilt, while a
// new pod's series have none: a sample older than the stale marker is never
// sent, a newer one is. With metric relabeling dropping the pod label, a
// new pod's series has the labels of an evicted one, and its tombstone.
func TestSeriesBackAfterEvictionKeepsItsLastTimestamp(t *testing.T) {
	dropPod, err := relabeling.Parse([]byte("cadvisor:\n- regex: pod\n  action: labeldrop\n"), "rules.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		relabel bool
	}{{"plain", false}, {"pod label dropped", true}} {
		t.Run(tc.name, func(t *testing.T) {
			tg := testTarget()
			if tc.relabel {
				tg.MetricRelabel = dropPod["cadvisor"]
			}
			c := NewTargetCache(tg, true)
			ix := testIndex(1, baseTeams)
			now := scrapeTime
			old := now.UnixMilli() - 1000 // the samples' own timestamp
			scrape := func(body []byte) *Result {
				t.Helper()
				now = now.Add(15 * time.Second)
				res := c.Process(body, "", now, time.Second, ix, nil)
				if res.Err != nil {
					t.Fatal(res.Err)
				}
				return res
			}
			if res := scrape(backPayload(old, "p1", "p2")); len(res.Send) != 6+numSelfFamilies {
				t.Fatalf("first scrape sent %d samples", len(res.Send))
			}
			staleAt := now.Add(15 * time.Second).UnixMilli()
			if res := scrape(backPayload(old, "p2")); res.Stale != 2 {
				t.Fatalf("p1 gone: %d stale markers, want 2", res.Stale)
			}
			for range 2 * evictAfter {
				scrape(backPayload(old, "p2"))
			}
			if c.tombs.len() != 2 || c.Len() != 4 {
				t.Fatalf("p1's series not evicted: %d tombstones, %d series", c.tombs.len(), c.Len())
			}
			// p1 back, with its old timestamp (not sent: its stale
			// marker went later) and a new pod, p3, with it too.
			back := "p1"
			if tc.relabel {
				back = "p9" // other pod, same labels once pod is dropped
			}
			res := scrape(backPayload(old, back, "p2", "p3"))
			if got := len(res.Send) - numSelfFamilies; got != 2 || res.SeriesAdded != 4 || res.Skipped != 6 {
				t.Fatalf("back with the old timestamp: sent %d, added %d, skipped %d; want p3's 2, 4 (p3's and %s's), 6 (%s's, p2's, the node's)",
					got, res.SeriesAdded, res.Skipped, back, back)
			}
			for _, s := range res.Send[:len(res.Send)-numSelfFamilies] {
				if s.T != old {
					t.Fatalf("sent a sample at %d", s.T)
				}
			}
			// Past the stale marker: sent.
			res = scrape(backPayload(staleAt+1, back, "p2", "p3"))
			if got := len(res.Send) - numSelfFamilies; got != 8 {
				t.Fatalf("back with a later timestamp: sent %d, want 8", got)
			}
		})
	}
}

// A new cache of a target that went away and came back (tombstoneAll, seed)
// knows the last timestamps of its series, the live ones' and the evicted
// ones'.
func TestTombstonesSurviveTheCache(t *testing.T) {
	c := NewTargetCache(testTarget(), true)
	ix := testIndex(1, baseTeams)
	now := scrapeTime
	old := now.UnixMilli() - 1000
	for k, body := range [][]byte{backPayload(old, "p1", "p2"), backPayload(old, "p2"), backPayload(old, "p2"), backPayload(old, "p2"), backPayload(old, "p2")} {
		now = now.Add(15 * time.Second)
		if res := c.Process(body, "", now, time.Second, ix, nil); res.Err != nil {
			t.Fatalf("scrape %d: %v", k, res.Err)
		}
	}
	c.MarkAllStale(now)
	tombs := c.tombstoneAll()
	if tombs.len() != 6 {
		t.Fatalf("%d tombstones, want p1's 2 and the 4 live series'", tombs.len())
	}
	c2 := NewTargetCache(testTarget(), true)
	c2.seed(tombs, now.Add(tombstoneTTL))
	res := c2.Process(backPayload(old, "p1", "p2", "p3"), "", now.Add(15*time.Second), time.Second, ix, nil)
	if got := len(res.Send) - numSelfFamilies; res.Err != nil || got != 2 || res.Skipped != 6 {
		t.Fatalf("new cache: err %v, sent %d, skipped %d; want p3's 2 sent, 6 skipped", res.Err, got, res.Skipped)
	}
}

// tombKeys gives LabelTable.Hash and the pod key podKeyOf gives the labels
// as interned, for every series of the captures, and for labels longer
// than its fast path reads.
func TestTombKeys(t *testing.T) {
	long := strings.Repeat("x", 200)
	bodies := [][]byte{[]byte(`m{namespace="` + long + `",pod="p"} 1` + "\n" + `m{namespace="ns",pod="` + long + `"} 1` + "\n" + `m{` + long + `="v",pod="p"} 1` + "\n")}
	for _, name := range captures {
		bodies = append(bodies, readCapture(t, name))
	}
	for i, body := range bodies {
		c := NewTargetCache(testTarget(), false)
		if res := c.Process(body, "", scrapeTime, time.Second, testIndex(1, baseTeams), nil); res.Err != nil {
			t.Fatal(res.Err)
		}
		table := c.labels.Table()
		n := 0
		for _, e := range c.entries.all() {
			if !e.live() {
				continue
			}
			var ls []model.Label
			for it := table.Labels(e.ref); it.Next(); {
				ls = append(ls, model.Label{Name: string(it.Name), Value: string(it.Value)})
			}
			h, pod := tombKeys(table, e.ref)
			if h != table.Hash(e.ref) || pod != podKeyOf(ls) {
				t.Fatalf("payload %d, %v: tombKeys %x %x, want %x %x", i, ls, h, pod, table.Hash(e.ref), podKeyOf(ls))
			}
			n++
		}
		if n == 0 {
			t.Fatalf("payload %d: no series", i)
		}
	}
}
