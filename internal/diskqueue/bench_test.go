package diskqueue

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// benchDir is on the local disk (not a tmpfs) so that fsync costs what it
// costs in production; DISKQUEUE_BENCH_DIR overrides it.
func benchDir(b *testing.B) string {
	parent := os.Getenv("DISKQUEUE_BENCH_DIR")
	if parent == "" {
		parent = "/var/tmp"
	}
	dir, err := os.MkdirTemp(parent, "diskqueue-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

var benchSizes = []int{40 << 10, 400 << 10}

// BenchmarkAppendSync appends records with the default 1 s sync loop
// running and a final Sync, as the writer does: MB/s and records/s.
func BenchmarkAppendSync(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("record=%dKB", size>>10), func(b *testing.B) {
			q := openQueue(b, Options{Dir: benchDir(b), MaxBytes: 8 << 30})
			defer q.Close()
			h, p := rec(1, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := q.Append(h, p); err != nil {
					b.Fatal(err)
				}
			}
			if err := q.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkDrain reads and acknowledges a backlog (the catch-up rate once
// the receiver is back, without the network).
func BenchmarkDrain(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("record=%dKB", size>>10), func(b *testing.B) {
			q := openQueue(b, Options{Dir: benchDir(b), MaxBytes: 8 << 30, SyncInterval: time.Second})
			defer q.Close()
			h, p := rec(1, size)
			for range b.N {
				if err := q.Append(h, p); err != nil {
					b.Fatal(err)
				}
			}
			if err := q.Sync(); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				r, err := q.Next(ctx)
				if err != nil {
					b.Fatal(err)
				}
				q.Ack(r)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkSteadyState is the writer's path when the receiver keeps up:
// each record is appended, handed to the sender and finished (Done) before
// the next one. kept=true is direct mode (AppendKeep: handed out from
// memory); kept=false reads every record back from disk (NextInto a reused
// buffer, as the writer's reader), as before direct mode. The 1 s sync loop
// runs, so the fsync cost per record is included.
func BenchmarkSteadyState(b *testing.B) {
	for _, size := range benchSizes {
		for _, keep := range []bool{false, true} {
			b.Run(fmt.Sprintf("record=%dKB/kept=%v", size>>10, keep), func(b *testing.B) {
				q := openQueue(b, Options{Dir: benchDir(b), MaxBytes: 8 << 30})
				defer q.Close()
				h, p := rec(1, size)
				var buf []byte
				getBuf := func() []byte { return buf }
				ctx := context.Background()
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					var err error
					if keep {
						_, err = q.AppendKeep(h, p)
					} else {
						err = q.Append(h, p)
					}
					if err != nil {
						b.Fatal(err)
					}
					r, rb, err := q.NextInto(ctx, getBuf)
					if err != nil {
						b.Fatal(err)
					}
					if r.Kept != keep {
						b.Fatalf("Kept %v, want %v", r.Kept, keep)
					}
					if rb != nil {
						buf = rb
					}
					q.Done(r)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}
