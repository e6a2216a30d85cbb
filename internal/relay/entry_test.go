package relay

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"
)

// The cache holds one entry per series: its size is most of the relay's
// memory per series (README, Memory model).
func TestSeriesEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(seriesEntry{}); n != 40 {
		t.Fatalf("seriesEntry is %d bytes, want 40", n)
	}
}

func TestRawLenSaturates(t *testing.T) {
	for _, tc := range []struct {
		n       int
		predict int
	}{{0, 0}, {1, 1}, {65534, 65534}, {65535, 0}, {1 << 20, 0}} {
		l := rawLenOf(tc.n)
		if got := l.predict(); got != tc.predict {
			t.Errorf("rawLenOf(%d).predict() = %d, want %d", tc.n, got, tc.predict)
		}
		if tc.n >= 65535 && l != rawLenOf(tc.n+1) {
			t.Errorf("lengths %d and %d differ, want both saturated", tc.n, tc.n+1)
		}
	}
}

// The scrape counter wraps at 2^16 (seriesEntry.seen): across the wrap a
// series is neither a duplicate of itself nor kept past eviction, and a
// series that goes away gets its stale marker. Starting a little before the
// wrap, every 3rd scrape drops one series and adds a new one.
func TestScrapeCounterWraps(t *testing.T) {
	ix := testIndex(1, baseTeams)
	c := NewTargetCache(testTarget(), false)
	c.iter = math.MaxUint16 - 2*evictAfter
	payload := func(k int) []byte {
		var b strings.Builder
		fmt.Fprintf(&b, "# TYPE m gauge\nm{namespace=\"frontend\",i=\"steady\"} 1\n")
		if k%3 != 0 {
			fmt.Fprintf(&b, "m{namespace=\"frontend\",i=\"flaky\"} 1\n")
		}
		fmt.Fprintf(&b, "m{namespace=\"frontend\",i=\"new-%d\"} 1\n", k)
		return []byte(b.String())
	}
	for k := range 6 * evictAfter {
		res := c.Process(payload(k), "", scrapeTime.Add(time.Duration(k)*time.Minute), time.Second, ix, nil)
		if res.Err != nil || res.Duplicates != 0 {
			t.Fatalf("scrape %d (counter %d): err %v, %d duplicates", k, c.iter, res.Err, res.Duplicates)
		}
		wantAdded, wantStale := 1, 1 // new-k came, new-(k-1) went
		switch {
		case k == 0:
			wantAdded, wantStale = 2, 0
		case k == 1:
			wantAdded = 2 // flaky's first time
		case k%3 == 0:
			wantStale = 2 // flaky went too (it comes back with its entry)
		}
		if res.SeriesAdded != wantAdded || res.Stale != wantStale {
			t.Fatalf("scrape %d (counter %d): %d added, %d stale; want %d, %d", k, c.iter, res.SeriesAdded, res.Stale, wantAdded, wantStale)
		}
		// Series gone for longer than eviction allows are not kept.
		if n := c.Len(); n > 3+2*evictAfter {
			t.Fatalf("scrape %d (counter %d): %d entries cached", k, c.iter, n)
		}
	}
}

// The first scrape's arrays are trimmed (trim.go): no entry room left over
// beyond a sixteenth, and the scrapes after it unchanged.
func TestFirstScrapeTrimmed(t *testing.T) {
	body := readCapture(t, captures[0])
	ix := testIndex(1, baseTeams)
	c := NewTargetCache(testTarget(), false)
	first := c.Process(body, "", scrapeTime, time.Second, ix, nil)
	if first.Err != nil {
		t.Fatal(first.Err)
	}
	if n := c.entries.len(); c.entries.capacity()-n > n/16 {
		t.Fatalf("entries %d of capacity %d after the first scrape", n, c.entries.capacity())
	}
	second := c.Process(body, "", scrapeTime.Add(time.Minute), time.Second, ix, nil)
	if second.Err != nil || second.SeriesAdded != 0 || len(second.Send) != len(first.Send) {
		t.Fatalf("second scrape: err %v, %d added, %d sent; want nil, 0, %d", second.Err, second.SeriesAdded, len(second.Send), len(first.Send))
	}
}

// A first scrape's list of the entries it created (one slot per series) is
// not kept until the next scrape.
func TestFirstScrapeFreesCreated(t *testing.T) {
	c := NewTargetCache(testTarget(), true)
	res := c.Process(readCapture(t, captures[0]), "", scrapeTime, time.Second, testIndex(1, baseTeams), nil)
	if res.Err != nil || res.SeriesAdded < 1024 {
		t.Fatalf("first scrape: %v, %d series added", res.Err, res.SeriesAdded)
	}
	if n := cap(c.created); n > 1024 {
		t.Fatalf("kept room for %d created entries after the scrape", n)
	}
}

// A streamed first scrape grows its view and order by append; neither keeps
// more than a sixteenth of room after it. A spare view from a target with
// many more series (the manager passes them around) is not kept for a
// small one.
func TestViewAndOrderFitTheTarget(t *testing.T) {
	body := readCapture(t, captures[0])
	ix := testIndex(1, baseTeams)
	c := NewTargetCache(testTarget(), true)
	res, _ := c.ProcessStream(bytes.NewReader(body), scrapeTime, ix, nil)
	n := len(res.View.Samples)
	if res.Err != nil || n < 1000 {
		t.Fatalf("first scrape: %v, %d samples", res.Err, n)
	}
	if c := cap(res.View.Samples); c > n+n/16 {
		t.Errorf("first view: room for %d samples, %d shown", c, n)
	}
	if k := len(c.prev); cap(c.prev) > k+k/16 {
		t.Errorf("first order: room for %d, %d series", cap(c.prev), k)
	}
	c.Recycle(nil)
	c.spare = &view.TargetView{Samples: make([]view.ViewSample, 0, 20*n)}
	res, _ = c.ProcessStream(bytes.NewReader(body), scrapeTime.Add(time.Minute), ix, nil)
	if got := cap(res.View.Samples); res.Err != nil || len(res.View.Samples) != n || got > n+n/4 {
		t.Errorf("second scrape (%v): %d samples, room for %d", res.Err, len(res.View.Samples), got)
	}
}

// The chunked entry store numbers entries in order across chunks, keeps
// each entry where it is as it grows (no chunk is copied but a trimmed
// last one), and trim gives back the last chunk's unused room.
func TestEntryStore(t *testing.T) {
	for _, n := range []int{0, 1, entryChunk - 1, entryChunk, entryChunk + 1, 3*entryChunk + 17} {
		var s entryStore
		var ptrs []*seriesEntry
		for i := range n {
			e := s.add()
			if e != uint32(i) {
				t.Fatalf("n=%d: entry %d numbered %d", n, i, e)
			}
			s.at(e).key = uint64(i) + 1
			ptrs = append(ptrs, s.at(e))
		}
		for i, p := range ptrs {
			if s.at(uint32(i)) != p {
				t.Fatalf("n=%d: entry %d moved", n, i)
			}
		}
		if s.trim(); s.capacity() != n {
			t.Fatalf("n=%d: capacity %d after trim", n, s.capacity())
		}
		e := s.add() // regrows a trimmed chunk
		s.at(e).key = uint64(n) + 1
		k := 0
		for i, e := range s.all() {
			if int(i) != k || e.key != uint64(k)+1 {
				t.Fatalf("n=%d: all() gave entry %d (key %d) at %d", n, i, e.key, k)
			}
			k++
		}
		if k != n+1 || s.len() != n+1 {
			t.Fatalf("n=%d: all() gave %d entries, len %d; want %d", n, k, s.len(), n+1)
		}
	}
	var s entryStore
	s.reserve(2*entryChunk + 1)
	if c := s.capacity(); c < 2*entryChunk+1 || c > 3*entryChunk || s.len() != 0 {
		t.Fatalf("reserve: capacity %d, len %d", c, s.len())
	}
}
