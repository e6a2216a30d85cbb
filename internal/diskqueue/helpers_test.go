package diskqueue

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type testQueue struct {
	*Queue
	reg *prometheus.Registry
}

func openQueue(t testing.TB, o Options) testQueue {
	t.Helper()
	reg := prometheus.NewRegistry()
	if o.Name == "" {
		o.Name = "test"
	}
	q, err := Open(o, nil, reg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return testQueue{q, reg}
}

// counter returns the value of the queue's metric name (without prefix),
// with reason if given.
func (q testQueue) counter(name, reason string) float64 {
	switch name {
	case "dropped_records_total":
		return testutil.ToFloat64(q.m.droppedRecords.WithLabelValues(reason))
	case "dropped_bytes_total":
		return testutil.ToFloat64(q.m.droppedBytes.WithLabelValues(reason))
	case "dropped_samples_total":
		return testutil.ToFloat64(q.m.droppedSamples.WithLabelValues(reason))
	case "append_errors_total":
		return testutil.ToFloat64(q.m.appendErrors.WithLabelValues(reason))
	case "records":
		return testutil.ToFloat64(q.m.records)
	case "samples":
		return testutil.ToFloat64(q.m.samples)
	case "bytes":
		return testutil.ToFloat64(q.m.bytes)
	case "oldest":
		return testutil.ToFloat64(q.m.oldest)
	}
	panic(name)
}

// crash abandons the queue as kill -9 would: no sync, no checkpoint, the
// lock released only because the process's descriptors go away.
func (q testQueue) crash() {
	q.closeOnce.Do(func() {
		close(q.closed)
		<-q.syncDone
		q.mu.Lock()
		q.isClosed = true
		if q.w != nil {
			q.w.Close()
		}
		for _, f := range q.toClose {
			f.Close()
		}
		q.mu.Unlock()
		q.readMu.Lock()
		q.closeReadFile()
		q.readMu.Unlock()
		q.ckMu.Lock()
		q.ckFile.Close()
		q.ckMu.Unlock()
		q.lock.Close()
	})
}

// rec builds a record numbered n (in the header's Key and MinT and in the
// payload's first bytes) with size bytes of payload.
func rec(n, size int) (Header, []byte) {
	p := make([]byte, max(size, 8))
	binary.LittleEndian.PutUint64(p, uint64(n))
	for i := 8; i < len(p); i++ {
		p[i] = byte(n*31 + i)
	}
	return Header{Samples: uint32(n%100 + 1), MinT: int64(1000 * n), MaxT: int64(1000*n + 999), Key: uint64(n)}, p
}

func checkRec(t testing.TB, r Record, n, size int) {
	t.Helper()
	h, p := rec(n, size)
	if r.Header != h {
		t.Fatalf("record %d: header %+v, want %+v", n, r.Header, h)
	}
	if string(r.Payload) != string(p) {
		got := -1
		if len(r.Payload) >= 8 {
			got = int(binary.LittleEndian.Uint64(r.Payload))
		}
		t.Fatalf("record %d: payload of %d bytes numbered %d, want %d bytes", n, len(r.Payload), got, len(p))
	}
}

func appendN(t testing.TB, q testQueue, from, to, size int) {
	t.Helper()
	for n := from; n < to; n++ {
		h, p := rec(n, size)
		if err := q.Append(h, p); err != nil {
			t.Fatalf("Append %d: %v", n, err)
		}
	}
}

// next reads one record, failing the test if none comes within a second.
func next(t testing.TB, q testQueue) Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r, err := q.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return r
}

// empty checks that nothing is left to read.
func empty(t testing.TB, q testQueue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	r, err := q.Next(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on a drained queue: record %+v, err %v; want deadline exceeded", r.Header, err)
	}
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	es, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Name() == "lock" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
