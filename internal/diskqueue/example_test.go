package diskqueue_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/diskqueue"
)

// Example sketches how a remote-write endpoint uses the queue: shards
// append encoded requests (falling back to memory when the disk refuses),
// one sender reads, POSTs and acknowledges, and shutdown syncs what is left
// for the next start.
func Example() {
	dir, _ := os.MkdirTemp("", "diskqueue-example-")
	defer os.RemoveAll(dir)
	q, err := diskqueue.Open(diskqueue.Options{Dir: dir, Name: "mimir"}, nil, nil)
	if err != nil {
		// ErrLocked: another relay uses the directory; ErrUnavailable: no
		// usable disk. Either way: run with the memory queue.
		fmt.Println("memory queue only:", err)
		return
	}

	// Producer (a shard's batch, already encoded into a request body).
	var memory [][]byte
	for i := range 3 {
		body := fmt.Appendf(nil, "request %d", i)
		h := diskqueue.Header{Samples: 1000, MinT: int64(i) * 15000, MaxT: int64(i)*15000 + 14999, Key: 7}
		if err := q.Append(h, body); errors.Is(err, diskqueue.ErrUnavailable) {
			memory = append(memory, body) // today's in-memory path
		}
	}

	// Sender: in order, acknowledged only once the receiver took it.
	send := func(ctx context.Context, body []byte) error { fmt.Printf("POST %s\n", body); return nil }
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	for {
		r, err := q.Next(ctx)
		if err != nil {
			break // ctx done (shutdown) or queue closed
		}
		if send(ctx, r.Payload) == nil {
			q.Ack(r)
		}
	}

	// SIGTERM: encode what is still in memory, Append it, then Sync and
	// Close within the shutdown timeout; it is sent after the next start.
	_ = q.Append(diskqueue.Header{Samples: 10}, []byte("left at shutdown"))
	if err := q.Sync(); err != nil {
		fmt.Println("not durable:", err)
	}
	q.Close()
	records, samples := reopenLen(dir)
	fmt.Println("on disk for the next start:", records, "records,", samples, "samples; in memory:", len(memory))
	// Output:
	// POST request 0
	// POST request 1
	// POST request 2
	// on disk for the next start: 1 records, 10 samples; in memory: 0
}

func reopenLen(dir string) (int64, int64) {
	q, err := diskqueue.Open(diskqueue.Options{Dir: dir}, nil, nil)
	if err != nil {
		return -1, -1
	}
	defer q.Close()
	return q.Len()
}
