package diskqueue

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestDoneOutOfOrder finishes records out of order: the acknowledged prefix
// never passes a record not done, so a restart resumes at the first one.
func TestDoneOutOfOrder(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(dir)
	o.SyncInterval = time.Hour
	q := openQueue(t, o)
	appendN(t, q, 0, 40, 2000)
	var recs []Record
	for range 40 {
		r := next(t, q)
		recs = append(recs, Record{Header: r.Header, Pos: r.Pos})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	order := rng.Perm(40)
	firstNotDone := 0
	done := make([]bool, 40)
	for _, i := range order[:30] {
		q.Done(recs[i])
		q.Done(recs[i]) // twice is once
		done[i] = true
		for firstNotDone < 40 && done[firstNotDone] {
			firstNotDone++
		}
		q.mu.Lock()
		ack := q.ack
		q.mu.Unlock()
		if firstNotDone < 40 && !ack.less(recs[firstNotDone].Pos) {
			t.Fatalf("acknowledged %+v, past record %d not done", ack, firstNotDone)
		}
		if firstNotDone > 0 && ack != recs[firstNotDone-1].Pos {
			t.Fatalf("acknowledged %+v, want up to record %d (%+v)", ack, firstNotDone-1, recs[firstNotDone-1].Pos)
		}
		if got, want := q.InFlight(), 40-firstNotDone; got != want {
			t.Fatalf("in flight %d, want %d", got, want)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openQueue(t, o)
	defer q.Close()
	r := next(t, q)
	checkRec(t, r, firstNotDone, 2000)
}

// TestDoneNotReadAgain is the regression test of the re-sent records (issue
// 12): records finished out of order by parallel senders, beyond one still
// in flight, were read again after a restart (graceful or kill -9) and
// re-sent, older samples after newer ones of the same series, which a
// receiver rejects as out of order. Only the unfinished ones may come back.
func TestDoneNotReadAgain(t *testing.T) {
	for _, graceful := range []bool{true, false} {
		t.Run(fmt.Sprintf("graceful=%v", graceful), func(t *testing.T) {
			dir := t.TempDir()
			o := smallOpts(dir) // 8 KiB segments: the records span several
			o.SyncInterval = time.Hour
			q := openQueue(t, o)
			appendN(t, q, 0, 30, 1000)
			var recs []Record
			for range 20 {
				recs = append(recs, next(t, q))
			}
			unfinished := []int{3, 11, 12, 19} // in flight at the stop
			for i, r := range recs {
				if !slices.Contains(unfinished, i) {
					q.Done(r)
				}
			}
			if graceful {
				if err := q.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				q.crash() // no Sync: what a killed process left
			}
			q2 := openQueue(t, o)
			defer q2.Close()
			want := append(slices.Clone(unfinished), rangeInts(20, 30)...)
			for _, n := range want {
				r := next(t, q2)
				checkRec(t, r, n, 1000)
				q2.Done(r)
			}
			empty(t, q2)
			if r, s := q2.Len(); r != 0 || s != 0 {
				t.Fatalf("drained, yet Len = %d records, %d samples", r, s)
			}
			if got := q2.InFlight(); got != 0 {
				t.Fatalf("in flight %d after all done", got)
			}
			if err := q2.Sync(); err != nil {
				t.Fatal(err)
			}
			if segs := segFiles(t, dir); len(segs) != 1 {
				t.Fatalf("segments left after draining: %v, want the write segment only", segs)
			}
		})
	}
}

func rangeInts(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// TestCheckpointSlots: a torn newest slot leaves the previous one, and the
// first (20-byte) format is still read.
func TestCheckpointSlots(t *testing.T) {
	dir := t.TempDir()
	c := &checkpoint{gen: 6, ack: Pos{3, 100}, done: []Pos{{3, 200}, {4, 8}}}
	f, err := createCheckpoint(dir, c)
	if err != nil {
		t.Fatal(err)
	}
	var buf [ckSlotSize]byte
	c7 := &checkpoint{gen: 7, ack: Pos{3, 200}, done: []Pos{{4, 8}}}
	if err := writeSlot(f, c7, buf[:]); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, checkpointName)
	got, err := readCheckpoint(path)
	if err != nil || got.gen != 7 || got.ack != c7.ack || !slices.Equal(got.done, c7.done) {
		t.Fatalf("read %+v, %v; want %+v", got, err, c7)
	}
	// Tear gen 7 (slot 1): gen 6 is read.
	if _, err := f.WriteAt([]byte{0xff, 0xff}, ckSlotSize+14); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err = readCheckpoint(path)
	if err != nil || got.gen != 6 || got.ack != c.ack || !slices.Equal(got.done, c.done) {
		t.Fatalf("after tearing the newest slot: %+v, %v; want %+v", got, err, c)
	}
	// More finished records than a slot holds: the first ckMaxDone kept.
	big := &checkpoint{gen: 8}
	for i := range ckMaxDone + 10 {
		big.done = append(big.done, Pos{1, int64(8 + i)})
	}
	if dec, ok := decodeSlot(big.encode(buf[:])); !ok || len(dec.done) != ckMaxDone {
		t.Fatalf("a full slot decodes to %d entries (ok %v), want %d", len(dec.done), ok, ckMaxDone)
	}
	var legacy [legacyCheckpointSize]byte
	binary.LittleEndian.PutUint64(legacy[0:], 5)
	binary.LittleEndian.PutUint64(legacy[8:], 77)
	binary.LittleEndian.PutUint32(legacy[16:], crc32.Checksum(legacy[:16], castagnoli))
	if err := os.WriteFile(path, legacy[:], 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := readCheckpoint(path); err != nil || got.ack != (Pos{5, 77}) {
		t.Fatalf("legacy checkpoint read as %+v, %v", got, err)
	}
}

// TestSyncLoop: the loop fsyncs on its own, and the checkpoint says what
// was acknowledged.
func TestSyncLoop(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, smallOpts(dir)) // SyncInterval 10ms
	defer q.Close()
	appendN(t, q, 0, 3, 10)
	q.Ack(next(t, q))
	time.Sleep(100 * time.Millisecond)
	cp, err := readCheckpoint(filepath.Join(dir, checkpointName))
	if err != nil {
		t.Fatalf("no checkpoint: %v", err)
	}
	q.mu.Lock()
	ack := q.ack
	q.mu.Unlock()
	if cp.ack != ack {
		t.Fatalf("checkpoint %+v, acknowledged %+v", cp.ack, ack)
	}
	if _, err := os.Stat(filepath.Join(dir, checkpointName+".tmp")); err == nil {
		t.Fatal("temporary checkpoint left behind")
	}
}
