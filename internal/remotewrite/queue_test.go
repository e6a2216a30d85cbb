package remotewrite

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestSampleIs32Bytes(t *testing.T) {
	if n := unsafe.Sizeof(model.Sample{}); n != 32 {
		t.Fatalf("model.Sample is %d bytes; the ring buffers budget 32", n)
	}
}

// TestRingMatchesModel drives the ring with random pushes and pops and
// compares it with a plain slice that drops from the front.
func TestRingMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, maxLen := range []int{1, 3, 10, 300, 1000} {
		r := ring{max: maxLen}
		var want []int64
		next := int64(0)
		for step := 0; step < 5000; step++ {
			if rng.IntN(3) > 0 {
				k := rng.IntN(2*maxLen + 2)
				in := make([]model.Sample, k)
				for i := range in {
					in[i] = model.Sample{T: next}
					next++
					want = append(want, in[i].T)
				}
				wantDropped := max(0, len(want)-maxLen)
				want = want[wantDropped:]
				if got := r.push(in); got != wantDropped {
					t.Fatalf("max %d step %d: push dropped %d, want %d", maxLen, step, got, wantDropped)
				}
			} else {
				dst := make([]model.Sample, rng.IntN(maxLen+1))
				k := r.pop(dst)
				if k != min(len(dst), len(want)) {
					t.Fatalf("popped %d, want %d", k, min(len(dst), len(want)))
				}
				for i := 0; i < k; i++ {
					if dst[i].T != want[i] {
						t.Fatalf("max %d step %d: popped T=%d, want %d", maxLen, step, dst[i].T, want[i])
					}
				}
				want = want[k:]
			}
			if r.n != len(want) || len(r.buf) > maxLen {
				t.Fatalf("ring holds %d in %d slots, model %d, max %d", r.n, len(r.buf), len(want), maxLen)
			}
		}
	}
}

func TestRingReleasesTables(t *testing.T) {
	r := ring{max: 4}
	s := newSeries("__name__", "x")
	r.push([]model.Sample{s.at(0, 0), s.at(0, 0), s.at(0, 0)})
	r.push([]model.Sample{s.at(0, 0), s.at(0, 0)}) // drops one
	r.pop(make([]model.Sample, 2))
	held := 0
	for _, x := range r.buf {
		if x.Table != nil {
			held++
		}
	}
	if held != r.n {
		t.Fatalf("%d slots still reference a table, %d samples queued", held, r.n)
	}
}

func TestBackoffBoundsAndGrowth(t *testing.T) {
	minB, maxB := 30*time.Millisecond, 5*time.Second
	for attempt := range 30 {
		ceiling := min(minB<<min(attempt, 20), maxB)
		for range 50 {
			d := backoff(minB, maxB, attempt, 0)
			if d < minB || d > maxB || d < ceiling/2 || d > ceiling {
				t.Fatalf("attempt %d: %s outside [%s, %s]", attempt, d, max(minB, ceiling/2), ceiling)
			}
		}
	}
	// Jitter: repeated waits differ.
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[backoff(minB, maxB, 10, 0)] = true
	}
	if len(seen) < 5 {
		t.Fatalf("backoff has little jitter: %v", seen)
	}
}

func TestLogLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLogLimiter(time.Minute)
	l.now = func() time.Time { return now }
	if ok, _ := l.allow("a"); !ok {
		t.Fatal("first message held back")
	}
	for range 5 {
		if ok, _ := l.allow("a"); ok {
			t.Fatal("repeat within the interval let through")
		}
	}
	if ok, _ := l.allow("b"); !ok {
		t.Fatal("another cause held back")
	}
	now = now.Add(time.Minute)
	if ok, suppressed := l.allow("a"); !ok || suppressed != 5 {
		t.Fatalf("after the interval: ok=%v suppressed=%d, want true and 5", ok, suppressed)
	}
}

// TestAppendGroupsByShardStably checks the counting sort: each shard gets
// exactly the samples of the tables whose Key maps to it, each table's (so
// each series') in the order appended.
func TestAppendGroupsByShardStably(t *testing.T) {
	ep := testEndpoint("http://127.0.0.1:1/push")
	ep.Queue.Shards = 7
	w, err := New(Config{Endpoints: []EndpointConfig{ep}}, testLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// 10 targets of 5 series each; a series is identified by its table's
	// Key and its ref.
	type id struct {
		key uint64
		ref model.SeriesRef
	}
	var ss []testSeries
	for tgt := range 10 {
		tg := newTarget(uint64(1000 + 3*tgt))
		for i := range 5 {
			ss = append(ss, tg.series(pairs("__name__", "m", "i", fmt.Sprint(i))...))
		}
	}
	var in []model.Sample
	for r := range 20 {
		for _, s := range ss {
			in = append(in, s.at(int64(r), 0))
		}
	}
	w.Append(in)
	q := w.queues[0]
	total, used := 0, 0
	for k, sh := range q.shards {
		last := map[id]int64{}
		lastKey := map[uint64]int{} // index in in of the key's previous sample
		got := make([]model.Sample, sh.ring.n)
		sh.ring.pop(got)
		total += len(got)
		if len(got) > 0 {
			used++
		}
		for _, x := range got {
			if int(x.Table.Key%uint64(len(q.shards))) != k {
				t.Fatalf("table with key %d on shard %d", x.Table.Key, k)
			}
			sid := id{x.Table.Key, x.Ref}
			if prev, ok := last[sid]; ok && x.T != prev+1 {
				t.Fatalf("shard %d: T %d after %d", k, x.T, prev)
			}
			last[sid] = x.T
			// The table's samples as a whole keep their order too.
			j := slices.IndexFunc(in, func(s model.Sample) bool { return s == x })
			if prev, ok := lastKey[x.Table.Key]; ok && j <= prev {
				t.Fatalf("shard %d: table %d's samples reordered", k, x.Table.Key)
			}
			lastKey[x.Table.Key] = j
		}
	}
	if total != len(in) {
		t.Fatalf("shards hold %d of %d samples", total, len(in))
	}
	if used < 2 {
		t.Fatalf("10 tables all went to one shard of 7")
	}
}

// TestTablesWithDifferentKeysUseDifferentShards: two producers whose Keys map
// to different shards are sent by different shards, each producer's samples
// in order, and all of a producer's series go to the one shard, however
// many snapshots (and series) it has.
func TestTablesWithDifferentKeysUseDifferentShards(t *testing.T) {
	ep := testEndpoint("http://127.0.0.1:1/push")
	ep.Queue.Shards = 4
	w, err := New(Config{Endpoints: []EndpointConfig{ep}}, testLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := newTarget(4*10+1), newTarget(4*10+2) // shards 1 and 2
	var in []model.Sample
	for r := range 30 {
		// Each round adds a series, so each has a new snapshot too.
		sa := a.series(pairs("__name__", "m", "r", fmt.Sprint(r))...)
		sb := b.series(pairs("__name__", "m", "r", fmt.Sprint(r))...)
		in = append(in, sa.at(int64(r), 1), sb.at(int64(r), 2))
	}
	w.Append(in)
	q := w.queues[0]
	for k, want := range map[int]float64{0: 0, 1: 1, 2: 2, 3: 0} {
		sh := q.shards[k]
		got := make([]model.Sample, sh.ring.n)
		sh.ring.pop(got)
		if want == 0 {
			if len(got) != 0 {
				t.Fatalf("shard %d holds %d samples", k, len(got))
			}
			continue
		}
		if len(got) != 30 {
			t.Fatalf("shard %d holds %d samples, want 30", k, len(got))
		}
		for i, x := range got {
			if x.V != want || x.T != int64(i) {
				t.Fatalf("shard %d sample %d: V=%v T=%d, want V=%v T=%d", k, i, x.V, x.T, want, i)
			}
		}
	}
}

// TestBackoffNeverShrinks: consecutive waits of one request never get
// shorter, at the cap too, where equal jitter alone would pick anything in
// [max/2, max] (issue 12).
func TestBackoffNeverShrinks(t *testing.T) {
	for _, c := range []struct{ minB, maxB time.Duration }{
		{30 * time.Millisecond, 5 * time.Second},
		{time.Millisecond, 10 * time.Millisecond},
		{time.Second, time.Second},
	} {
		for run := range 200 {
			var prev time.Duration
			for attempt := range 40 {
				d := backoff(c.minB, c.maxB, attempt, prev)
				if d < prev {
					t.Fatalf("%v run %d attempt %d: wait %s after %s", c, run, attempt, d, prev)
				}
				if d < c.minB || d > c.maxB {
					t.Fatalf("%v attempt %d: wait %s outside [%s, %s]", c, attempt, d, c.minB, c.maxB)
				}
				prev = d
			}
		}
	}
}
