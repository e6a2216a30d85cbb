package diskqueue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func smallOpts(dir string) Options {
	return Options{Dir: dir, MaxBytes: 1 << 20, SegmentBytes: 16 << 10, MaxRecordBytes: 64 << 10, SyncInterval: 10 * time.Millisecond, RetryInterval: 10 * time.Millisecond}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Dir: "x"}, ""},
		{Options{}, "Dir is empty"},
		{Options{Dir: "x", SegmentBytes: 100}, "SegmentBytes 100"},
		{Options{Dir: "x", MaxBytes: 1 << 20, SegmentBytes: 1 << 20}, "less than two segments"},
		{Options{Dir: "x", MaxBytes: 1 << 20, MaxRecordBytes: 1 << 20}, "MaxRecordBytes"},
		{Options{Dir: "x", SyncInterval: -1}, "SyncInterval"},
	} {
		err := tc.o.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want error containing %q", tc.o, err, tc.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(dir)
	o.MaxBytes = 16 << 20
	q := openQueue(t, o)
	sizes := []int{0, 1, 100, 5000, 15000, 40000, 8}
	const n = 200
	for i := range n {
		h, p := rec(i, sizes[i%len(sizes)])
		if err := q.Append(h, p); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(segFiles(t, dir)); got < 10 {
		t.Fatalf("%d segments, want records spread over many", got)
	}
	if r, _ := q.Len(); r != n || q.counter("records", "") != n {
		t.Fatalf("Len %d, records gauge %v, want %d", r, q.counter("records", ""), n)
	}
	if got, want := q.counter("oldest", ""), 0.0; got != want {
		t.Fatalf("oldest %v, want %v", got, want)
	}
	for i := range n {
		r := next(t, q)
		checkRec(t, r, i, sizes[i%len(sizes)])
		q.Ack(r)
	}
	empty(t, q)
	if r, s := q.Len(); r != 0 || s != 0 || q.counter("samples", "") != 0 {
		t.Fatalf("after acking all: %d records %d samples on disk", r, s)
	}
	if got := len(segFiles(t, dir)); got != 1 {
		t.Fatalf("%d segment files after acking all, want only the write segment", got)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	if err := q.Append(rec(1, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
}

func TestTooLargeAndLocked(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, smallOpts(dir))
	defer q.Close()
	if err := q.Append(Header{}, make([]byte, 64<<10+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized Append: %v", err)
	}
	if _, err := Open(smallOpts(dir), nil, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open of %s: %v, want ErrLocked", dir, err)
	}
}

func TestRestartResumesAtUnacked(t *testing.T) {
	for _, graceful := range []bool{true, false} {
		t.Run(fmt.Sprintf("graceful=%v", graceful), func(t *testing.T) {
			dir := t.TempDir()
			o := smallOpts(dir)
			o.SyncInterval = time.Hour // only explicit Syncs
			q := openQueue(t, o)
			appendN(t, q, 0, 100, 1000)
			var last Record
			for i := range 60 {
				r := next(t, q)
				checkRec(t, r, i, 1000)
				if i < 50 {
					q.Ack(r)
				}
				last = r
			}
			_ = last
			if graceful {
				if err := q.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				// kill -9 after a Sync, with 50..59 read and not acked
				// and, after the Sync, 60 read and acked (and with it
				// 50..59): every Ack is written to the checkpoint file
				// (no fsync needed against a kill), so none comes again.
				if err := q.Sync(); err != nil {
					t.Fatal(err)
				}
				q.Ack(next(t, q))
				q.crash()
			}
			q2 := openQueue(t, o)
			defer q2.Close()
			first := next(t, q2)
			k := int(first.Key)
			if graceful && k != 50 || !graceful && k != 61 {
				t.Fatalf("reopened at record %d, want 50 (61 after the crash)", k)
			}
			checkRec(t, first, k, 1000)
			q2.Ack(first)
			if r, _ := q2.Len(); r != int64(99-k) {
				t.Fatalf("reopened at %d with %d more records, want %d", k, r, 99-k)
			}
			for i := k + 1; i < 100; i++ {
				r := next(t, q2)
				checkRec(t, r, i, 1000)
				q2.Ack(r)
			}
			empty(t, q2)
		})
	}
}

// TestTornTail cuts the last record of a segment at every byte offset, as a
// crash in the middle of a write would (or a lost page at power loss), and
// reopens: the earlier records are read, the torn one is counted, and the
// queue goes on.
func TestTornTail(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	o := smallOpts(src)
	q := openQueue(t, o)
	appendN(t, q, 0, 5, 50)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segFiles(t, src)
	if len(segs) != 1 {
		t.Fatalf("segments %v, want one", segs)
	}
	full, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	recLen := frameSize + recHeaderSize + 50
	lastStart := len(full) - recLen
	for cut := lastStart; cut < len(full); cut++ {
		dir := filepath.Join(base, fmt.Sprint(cut))
		copyDir(t, src, dir)
		if err := os.Truncate(filepath.Join(dir, filepath.Base(segs[0])), int64(cut)); err != nil {
			t.Fatal(err)
		}
		o := o
		o.Dir = dir
		q := openQueue(t, o)
		for i := range 4 {
			checkRec(t, next(t, q), i, 50)
		}
		appendN(t, q, 100, 101, 10)
		r := next(t, q)
		checkRec(t, r, 100, 10)
		q.Ack(r)
		want := 1.0
		if cut == lastStart {
			want = 0 // a clean cut between records
		}
		if got := q.counter("dropped_records_total", reasonTorn); got != want {
			t.Fatalf("cut at %d: torn records %v, want %v", cut, got, want)
		}
		if got, want := q.counter("dropped_bytes_total", reasonTorn), float64(cut-lastStart); got != want {
			t.Fatalf("cut at %d: torn bytes %v, want %v", cut, got, want)
		}
		if r, _ := q.Len(); r != 0 {
			t.Fatalf("cut at %d: %d records left after reading all", cut, r)
		}
		q.Close()
		os.RemoveAll(dir)
	}
}

// TestBitFlip flips one bit in each field of a record in the middle of a
// segment: a flip in the payload, header or CRC skips that record only; a
// flip in the length that makes it implausible skips the rest of the
// segment, and the next segment is read.
func TestBitFlip(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	o := smallOpts(src)
	q := openQueue(t, o)
	const size = 100
	recLen := frameSize + recHeaderSize + size
	appendN(t, q, 0, 5, size) // one segment
	q.mu.Lock()
	if err := q.newSegmentLocked(); err != nil {
		t.Fatal(err)
	}
	q.mu.Unlock()
	appendN(t, q, 5, 7, size) // the next
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Base(segFiles(t, src)[0])
	rec2 := segHeaderSize + 2*recLen
	for _, tc := range []struct {
		name    string
		off     int
		bit     byte
		want    []int
		reason  string
		skipped int
	}{
		{"payload", rec2 + frameSize + recHeaderSize + 50, 0x10, []int{0, 1, 3, 4, 5, 6}, reasonCorrupt, recLen},
		{"header", rec2 + frameSize + 2, 0x01, []int{0, 1, 3, 4, 5, 6}, reasonCorrupt, recLen},
		{"crc", rec2 + 5, 0x80, []int{0, 1, 3, 4, 5, 6}, reasonCorrupt, recLen},
		{"length huge", rec2 + 3, 0x40, []int{0, 1, 5, 6}, reasonCorrupt, 3 * recLen},
		{"length short", rec2, 0x80, []int{0, 1, 5, 6}, reasonCorrupt, 3 * recLen}, // 136^0x80 = 8 < header
		{"length long", rec2, 0x01, []int{0, 1, 5, 6}, reasonCorrupt, 3 * recLen},  // CRC over a longer range fails, resumes one byte late, then a bad length
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(base, tc.name)
			copyDir(t, src, dir)
			path := filepath.Join(dir, seg)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[tc.off] ^= tc.bit
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			o := o
			o.Dir = dir
			q := openQueue(t, o)
			defer q.Close()
			var got []int
			for range tc.want {
				r := next(t, q)
				got = append(got, int(r.Key))
				q.Ack(r)
			}
			empty(t, q)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("read %v, want %v", got, tc.want)
			}
			if q.counter("dropped_records_total", tc.reason) < 1 {
				t.Fatalf("no %s record counted", tc.reason)
			}
			if got := q.counter("dropped_bytes_total", tc.reason); got != float64(tc.skipped) {
				t.Fatalf("%v bytes skipped, want %d", got, tc.skipped)
			}
			if r, _ := q.Len(); r != 0 {
				t.Fatalf("%d records still counted on disk", r)
			}
		})
	}
}

func TestMaxBytesDropsOldest(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(dir)
	o.MaxBytes, o.MaxRecordBytes = 64<<10, 16<<10
	q := openQueue(t, o)
	defer q.Close()
	const n, size = 300, 1000
	appendN(t, q, 0, n, size)
	var onDisk int64
	for _, f := range segFiles(t, dir) {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		onDisk += fi.Size()
	}
	if onDisk > o.MaxBytes || float64(onDisk) != q.counter("bytes", "") {
		t.Fatalf("%d bytes on disk (gauge %v), limit %d", onDisk, q.counter("bytes", ""), o.MaxBytes)
	}
	dropped := int(q.counter("dropped_records_total", reasonFull))
	if dropped == 0 {
		t.Fatal("nothing dropped")
	}
	left, _ := q.Len()
	if int(left)+dropped != n {
		t.Fatalf("%d left + %d dropped != %d appended", left, dropped, n)
	}
	var wantSamples float64
	for i := range dropped {
		h, _ := rec(i, 0)
		wantSamples += float64(h.Samples)
	}
	if got := q.counter("dropped_samples_total", reasonFull); got != wantSamples {
		t.Fatalf("dropped samples %v, want %v", got, wantSamples)
	}
	if got, want := q.counter("oldest", ""), float64(dropped); got != want {
		t.Fatalf("oldest sample %v s, want %v (record %d)", got, want, dropped)
	}
	// What is left is the newest records, in order.
	for i := dropped; i < n; i++ {
		r := next(t, q)
		checkRec(t, r, i, size)
		q.Ack(r)
	}
	empty(t, q)
}

// TestDropWhileReading drops the segment the reader is in and the record
// it holds unacknowledged; reading goes on with the oldest record left.
func TestDropWhileReading(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(dir)
	o.MaxBytes, o.MaxRecordBytes = 64<<10, 16<<10
	q := openQueue(t, o)
	defer q.Close()
	appendN(t, q, 0, 10, 1000)
	held := next(t, q)
	checkRec(t, held, 0, 1000)
	appendN(t, q, 10, 300, 1000)
	q.Ack(held) // its segment is gone: a no-op for the counts
	dropped := int(q.counter("dropped_records_total", reasonFull))
	r := next(t, q)
	checkRec(t, r, dropped+1, 1000) // record 0 was read, not dropped
	q.Ack(r)
	if left, _ := q.Len(); int(left) != 300-dropped-2 {
		t.Fatalf("%d records left, want %d", left, 300-dropped-2)
	}
}

func TestNextWaits(t *testing.T) {
	q := openQueue(t, smallOpts(t.TempDir()))
	defer q.Close()
	empty(t, q)
	got := make(chan Record)
	go func() {
		r, err := q.Next(context.Background())
		if err == nil {
			r.Payload = append([]byte(nil), r.Payload...)
		}
		got <- r
	}()
	time.Sleep(20 * time.Millisecond)
	appendN(t, q, 7, 8, 10)
	select {
	case r := <-got:
		checkRec(t, r, 7, 10)
	case <-time.After(time.Second):
		t.Fatal("Next did not wake up on Append")
	}
	// Close wakes a waiting Next.
	errc := make(chan error)
	go func() { _, err := q.Next(context.Background()); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	q.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
}

func TestDirRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	q := openQueue(t, smallOpts(dir))
	defer q.Close()
	appendN(t, q, 0, 20, 1000)
	r := next(t, q)
	q.Ack(r)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	err := q.Sync()
	t.Logf("Sync after removal: %v", err)
	if got := q.counter("dropped_records_total", reasonRemoved); got != 19 {
		t.Fatalf("removed records %v, want 19", got)
	}
	q.Sync() // noticed once, not again
	if got := q.counter("append_errors_total", "removed"); got != 1 {
		t.Fatalf("removed errors %v, want 1", got)
	}
	// The next Append re-creates the directory.
	appendN(t, q, 100, 101, 10)
	if _, err := os.Stat(filepath.Join(dir, "lock")); err != nil {
		t.Fatalf("directory not re-created: %v", err)
	}
	r = next(t, q)
	checkRec(t, r, 100, 10)
	q.Ack(r)
	if err := q.Sync(); err != nil {
		t.Fatal(err)
	}
	if left, _ := q.Len(); left != 0 {
		t.Fatalf("%d records left", left)
	}
}

// TestConcurrent: appenders and one reader at once, with small segments so
// that rotation and deletion race with reads; run with -race.
func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(dir)
	o.SyncInterval = time.Millisecond
	q := openQueue(t, o)
	defer q.Close()
	const writers, per = 4, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				h, p := rec(w*per+i, 10+i%2000)
				if err := q.Append(h, p); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	lastOf := make([]int, writers)
	for i := range lastOf {
		lastOf[i] = -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range writers * per {
		r, err := q.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := int(r.Key)
		w, i := n/per, n%per
		checkRec(t, r, n, 10+i%2000)
		if i <= lastOf[w] {
			t.Fatalf("writer %d: record %d after %d", w, i, lastOf[w])
		}
		lastOf[w] = i
		q.Ack(r)
	}
	wg.Wait()
	empty(t, q)
	for w, l := range lastOf {
		if l != per-1 {
			t.Fatalf("writer %d: last record %d", w, l)
		}
	}
}

// TestSegmentsLostBehindCheckpoint: with the segments gone (deleted by hand,
// or a partial restore) but the checkpoint still there, new segments are
// numbered after it, so a crash before the next checkpoint neither deletes
// nor skips into them.
func TestSegmentsLostBehindCheckpoint(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(dir)
	o.SyncInterval = time.Hour
	q := openQueue(t, o)
	appendN(t, q, 0, 30, 1000)
	for range 30 {
		q.Ack(next(t, q))
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range segFiles(t, dir) {
		os.Remove(f)
	}
	q = openQueue(t, o)
	appendN(t, q, 100, 103, 10)
	q.crash()
	q = openQueue(t, o)
	defer q.Close()
	for i := 100; i < 103; i++ {
		checkRec(t, next(t, q), i, 10)
	}
}
