package diskqueue

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// appendKeep appends record n with AppendKeep and checks whether the queue
// kept it.
func appendKeep(t testing.TB, q testQueue, n, size int, wantKept bool) []byte {
	t.Helper()
	h, p := rec(n, size)
	kept, err := q.AppendKeep(h, p)
	if err != nil {
		t.Fatalf("AppendKeep %d: %v", n, err)
	}
	if kept != wantKept {
		t.Fatalf("AppendKeep %d: kept %v, want %v", n, kept, wantKept)
	}
	return p
}

// nextN reads record n and checks that it came from memory (kept) or from
// disk as wanted.
func nextN(t testing.TB, q testQueue, n, size int, wantKept bool) Record {
	t.Helper()
	r := next(t, q)
	checkRec(t, r, n, size)
	if r.Kept != wantKept {
		t.Fatalf("record %d: Kept %v, want %v", n, r.Kept, wantKept)
	}
	return r
}

// TestAppendKeepNotReadBack: with nothing backlogged, a kept record is
// handed out from memory (the appender's own slice), not read back: a
// copy on disk overwritten after the append does not matter, and nothing
// is counted corrupt. It is on disk all the same, and once Done it is not
// read again after a restart, graceful or kill -9.
func TestAppendKeepNotReadBack(t *testing.T) {
	for _, graceful := range []bool{true, false} {
		t.Run(fmt.Sprintf("graceful=%v", graceful), func(t *testing.T) {
			dir := t.TempDir()
			o := smallOpts(dir)
			o.SyncInterval = time.Hour
			q := openQueue(t, o)
			var recs []Record
			for n := range 5 {
				p := appendKeep(t, q, n, 1000, true)
				// Spoil the disk copy: a read-back would find a bad CRC.
				segs := segFiles(t, dir)
				f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				q.mu.Lock()
				end := q.wseg.size
				q.mu.Unlock()
				if _, err := f.WriteAt(make([]byte, 100), end-100); err != nil {
					t.Fatal(err)
				}
				f.Close()
				r := nextN(t, q, n, 1000, true)
				if &r.Payload[0] != &p[0] {
					t.Fatalf("record %d: payload copied, want the appended slice itself", n)
				}
				recs = append(recs, r)
			}
			empty(t, q)
			if got := q.counter("dropped_records_total", reasonCorrupt); got != 0 {
				t.Fatalf("%v records counted corrupt: a kept record was read back", got)
			}
			if got, want := testutil.ToFloat64(q.m.directRecords), 5.0; got != want {
				t.Fatalf("direct_records_total %v, want %v", got, want)
			}
			if got := testutil.ToFloat64(q.m.readRecords); got != 5 {
				t.Fatalf("read_records_total %v, want 5 (kept records included)", got)
			}
			// Finished out of order, the last one still under way.
			for _, i := range []int{1, 0, 3, 2} {
				q.Done(recs[i])
			}
			if r, s := q.Len(); r != 1 || s != int64(recs[4].Samples) {
				t.Fatalf("Len %d records %d samples, want the one under way", r, s)
			}
			if graceful {
				if err := q.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				q.crash()
			}
			q2 := openQueue(t, o)
			defer q2.Close()
			// Only the unfinished one comes back, from disk (its copy
			// there was spoiled above: skipped as corrupt and counted).
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if r, err := q2.Next(ctx); err == nil {
				t.Fatalf("after the restart record %+v was read again", r.Header)
			}
			if got := q2.counter("dropped_records_total", reasonCorrupt); got != 1 {
				t.Fatalf("%v corrupt records after the restart, want 1 (the unfinished one, spoiled)", got)
			}
		})
	}
}

// TestAppendKeepBacklogMode: a record that goes to disk only (Append, or
// AppendKeep beyond KeepBytes) starts a backlog: later AppendKeeps do not
// keep until the reader has caught up with the writer, so the backlog is
// read back from disk, and everything comes out in append order.
func TestAppendKeepBacklogMode(t *testing.T) {
	o := smallOpts(t.TempDir())
	o.KeepBytes = 3000
	q := openQueue(t, o)
	defer q.Close()

	appendKeep(t, q, 0, 1000, true)
	h, p := rec(1, 1000)
	if err := q.Append(h, p); err != nil { // to disk only: a backlog
		t.Fatal(err)
	}
	appendKeep(t, q, 2, 1000, false)
	nextN(t, q, 0, 1000, true)
	nextN(t, q, 1, 1000, false)
	appendKeep(t, q, 3, 1000, false) // record 2 not read yet
	nextN(t, q, 2, 1000, false)
	nextN(t, q, 3, 1000, false)
	empty(t, q) // caught up: direct again
	// Up to KeepBytes kept (one always), then a backlog again.
	appendKeep(t, q, 4, 1000, true)
	appendKeep(t, q, 5, 1000, true)
	appendKeep(t, q, 6, 1000, true)
	appendKeep(t, q, 7, 1000, false)
	nextN(t, q, 4, 1000, true)
	appendKeep(t, q, 8, 1000, false) // within KeepBytes now, but 7 is on disk only
	for n := 5; n <= 8; n++ {
		nextN(t, q, n, 1000, n <= 6)
	}
	empty(t, q)
	appendKeep(t, q, 9, 5000, true) // larger than KeepBytes: one is always kept
	appendKeep(t, q, 10, 1000, false)
	nextN(t, q, 9, 5000, true)
	nextN(t, q, 10, 1000, false)
	if got, want := testutil.ToFloat64(q.m.directRecords), 5.0; got != want {
		t.Fatalf("direct_records_total %v, want %v", got, want)
	}
}

// TestAppendKeepAfterRestart: a backlog left by the last run (kept records
// never sent) is read from disk first; new records are kept again only
// once it is all read, and the order holds across the restart.
func TestAppendKeepAfterRestart(t *testing.T) {
	o := smallOpts(t.TempDir())
	q := openQueue(t, o)
	for n := range 3 {
		appendKeep(t, q, n, 2000, true)
	}
	r := nextN(t, q, 0, 2000, true)
	q.Done(r)
	q.crash()

	q2 := openQueue(t, o)
	defer q2.Close()
	appendKeep(t, q2, 3, 2000, false)
	nextN(t, q2, 1, 2000, false)
	nextN(t, q2, 2, 2000, false)
	appendKeep(t, q2, 4, 2000, false)
	nextN(t, q2, 3, 2000, false)
	nextN(t, q2, 4, 2000, false)
	empty(t, q2)
	appendKeep(t, q2, 5, 2000, true)
	nextN(t, q2, 5, 2000, true)
}

// TestAppendKeepDroppedForRoom: kept records of a segment dropped to make
// room are dropped with it (counted once, never handed out), and the kept
// bytes are released.
func TestAppendKeepDroppedForRoom(t *testing.T) {
	o := smallOpts(t.TempDir())
	o.MaxBytes, o.SegmentBytes, o.MaxRecordBytes = 64<<10, 16<<10, 8<<10
	o.KeepBytes = 1 << 20
	q := openQueue(t, o)
	defer q.Close()
	const n, size = 40, 6000 // 240 KB into 64 KiB: most segments dropped
	for i := range n {
		h, p := rec(i, size)
		if _, err := q.AppendKeep(h, p); err != nil {
			t.Fatal(err)
		}
	}
	dropped := int(q.counter("dropped_records_total", reasonFull))
	if dropped == 0 {
		t.Fatal("nothing dropped for room")
	}
	q.mu.Lock()
	var keptBytes int64
	for _, k := range q.kept {
		keptBytes += int64(len(k.payload))
	}
	if keptBytes != q.keptBytes || len(q.kept) != n-dropped {
		t.Fatalf("%d kept records of %d bytes (counted %d), want %d", len(q.kept), keptBytes, q.keptBytes, n-dropped)
	}
	q.mu.Unlock()
	for i := dropped; i < n; i++ {
		q.Ack(nextN(t, q, i, size, true))
	}
	empty(t, q)
	if q.keptBytes != 0 {
		t.Fatalf("kept bytes %d after reading everything", q.keptBytes)
	}
}

// TestAppendKeepConcurrentOrder: appenders switching between AppendKeep
// and Append at random while the reader reads: every record comes out
// once, in append order, kept or read back.
func TestAppendKeepConcurrentOrder(t *testing.T) {
	o := smallOpts(t.TempDir())
	o.MaxBytes = 64 << 20
	o.KeepBytes = 8000
	q := openQueue(t, o)
	defer q.Close()
	const total = 3000
	// The appender numbers records under a lock so that the append order
	// is the numbering.
	var mu sync.Mutex
	next := 0
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for {
				mu.Lock()
				if next == total {
					mu.Unlock()
					return
				}
				h, p := rec(next, 100+next%900)
				var err error
				if rng.IntN(10) == 0 {
					err = q.Append(h, p)
				} else {
					_, err = q.AppendKeep(h, p)
				}
				next++
				mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	kept := 0
	for i := range total {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := q.Next(ctx)
		cancel()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		checkRec(t, r, i, 100+i%900)
		if r.Kept {
			kept++
		}
		q.Done(r)
	}
	wg.Wait()
	empty(t, q)
	if kept == 0 || kept == total {
		t.Fatalf("%d of %d records kept: the test did not switch modes", kept, total)
	}
	t.Logf("%d of %d records handed out from memory", kept, total)
}
