package diskqueue

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWindow finishes records out of order: the queue's acknowledgement
// never passes a record not done, so a restart resumes at the first one.
func TestWindow(t *testing.T) {
	dir := t.TempDir()
	o := smallOpts(dir)
	o.SyncInterval = time.Hour
	q := openQueue(t, o)
	appendN(t, q, 0, 40, 2000)
	w := q.NewWindow()
	var recs []Record
	for range 40 {
		r := next(t, q)
		w.Start(r)
		recs = append(recs, Record{Header: r.Header, Pos: r.Pos})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	order := rng.Perm(40)
	firstNotDone := 0
	done := make([]bool, 40)
	for _, i := range order[:30] {
		w.Done(recs[i])
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
		if got, want := w.InFlight(), 40-firstNotDone; got != want {
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

// TestSyncLoop: the loop fsyncs and checkpoints on its own.
func TestSyncLoop(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, smallOpts(dir)) // SyncInterval 10ms
	defer q.Close()
	appendN(t, q, 0, 3, 10)
	q.Ack(next(t, q))
	time.Sleep(100 * time.Millisecond)
	cp, err := readCheckpoint(filepath.Join(dir, checkpointName))
	if err != nil {
		t.Fatalf("no checkpoint written by the sync loop: %v", err)
	}
	q.mu.Lock()
	ack := q.ack
	q.mu.Unlock()
	if cp != ack {
		t.Fatalf("checkpoint %+v, acknowledged %+v", cp, ack)
	}
	if _, err := os.Stat(filepath.Join(dir, checkpointName+".tmp")); err == nil {
		t.Fatal("temporary checkpoint left behind")
	}
}
