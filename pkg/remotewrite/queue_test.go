package remotewrite

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"
)

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestSampleIs24Bytes(t *testing.T) {
	if n := unsafe.Sizeof(Sample{}); n != 24 {
		t.Fatalf("Sample is %d bytes; the ring buffers budget 24", n)
	}
}

// TestRingMatchesModel drives the ring with random pushes and pops and
// compares it with a plain slice that drops from the front.
func TestRingMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, maxLen := range []int{1, 3, 10, 300, 1000} {
		r := ring{max: maxLen}
		var model []int64
		next := int64(0)
		for step := 0; step < 5000; step++ {
			if rng.IntN(3) > 0 {
				k := rng.IntN(2*maxLen + 2)
				in := make([]Sample, k)
				for i := range in {
					in[i] = Sample{T: next}
					next++
					model = append(model, in[i].T)
				}
				wantDropped := max(0, len(model)-maxLen)
				model = model[wantDropped:]
				if got := r.push(in); got != wantDropped {
					t.Fatalf("max %d step %d: push dropped %d, want %d", maxLen, step, got, wantDropped)
				}
			} else {
				dst := make([]Sample, rng.IntN(maxLen+1))
				k := r.pop(dst)
				if k != min(len(dst), len(model)) {
					t.Fatalf("popped %d, want %d", k, min(len(dst), len(model)))
				}
				for i := 0; i < k; i++ {
					if dst[i].T != model[i] {
						t.Fatalf("max %d step %d: popped T=%d, want %d", maxLen, step, dst[i].T, model[i])
					}
				}
				model = model[k:]
			}
			if r.n != len(model) || len(r.buf) > maxLen {
				t.Fatalf("ring holds %d in %d slots, model %d, max %d", r.n, len(r.buf), len(model), maxLen)
			}
		}
	}
}

func TestRingReleasesSeries(t *testing.T) {
	r := ring{max: 4}
	s := newSeries("__name__", "x")
	r.push([]Sample{{Series: s}, {Series: s}, {Series: s}})
	r.push([]Sample{{Series: s}, {Series: s}}) // drops one
	r.pop(make([]Sample, 2))
	held := 0
	for _, x := range r.buf {
		if x.Series != nil {
			held++
		}
	}
	if held != r.n {
		t.Fatalf("%d slots still reference a series, %d samples queued", held, r.n)
	}
}

func TestBackoffBoundsAndGrowth(t *testing.T) {
	minB, maxB := 30*time.Millisecond, 5*time.Second
	for attempt := range 30 {
		ceiling := min(minB<<min(attempt, 20), maxB)
		for range 50 {
			d := backoff(minB, maxB, attempt)
			if d < minB || d > maxB || d < ceiling/2 || d > ceiling {
				t.Fatalf("attempt %d: %s outside [%s, %s]", attempt, d, max(minB, ceiling/2), ceiling)
			}
		}
	}
	// Jitter: repeated waits differ.
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[backoff(minB, maxB, 10)] = true
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
// exactly its series' samples, in the order appended.
func TestAppendGroupsByShardStably(t *testing.T) {
	ep := testEndpoint("http://127.0.0.1:1/push")
	ep.Queue.Shards = 7
	w, err := New(Config{Endpoints: []EndpointConfig{ep}}, testLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var ss []*Series
	for i := range 50 {
		ss = append(ss, newSeries("__name__", "m", "i", string(rune('a'+i))))
	}
	var in []Sample
	for r := range 20 {
		for _, s := range ss {
			in = append(in, Sample{Series: s, T: int64(r)})
		}
	}
	w.Append(in)
	q := w.queues[0]
	total := 0
	for k, sh := range q.shards {
		last := map[*Series]int64{}
		got := make([]Sample, sh.ring.n)
		sh.ring.pop(got)
		total += len(got)
		for _, x := range got {
			if int(x.Series.Hash%uint64(len(q.shards))) != k {
				t.Fatalf("series on shard %d belongs to another", k)
			}
			if prev, ok := last[x.Series]; ok && x.T != prev+1 {
				t.Fatalf("shard %d: T %d after %d", k, x.T, prev)
			}
			last[x.Series] = x.T
		}
	}
	if total != len(in) {
		t.Fatalf("shards hold %d of %d samples", total, len(in))
	}
}
