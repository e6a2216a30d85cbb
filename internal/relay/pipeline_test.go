package relay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/remotewrite"
)

// TestPipelineToRemoteWrite runs scrape caches into a real remotewrite.Writer
// and a receiver that decodes every request as Prometheus does, over many
// rounds with what production brings: more targets than the encoder keeps
// states for, pods coming and going (new series, evictions, label-table
// compactions), a namespace relabelled (stale markers of the old
// identities), failed scrapes, and requests of up to 10000 samples. Every
// request must decode and every sample arrive.
func TestPipelineToRemoteWrite(t *testing.T) {
	var (
		mu       sync.Mutex
		received int
		bad      []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		raw, err := snappy.Decode(nil, body)
		var wr prompb.WriteRequest
		if err == nil {
			err = wr.Unmarshal(raw)
		}
		n := 0
		for _, ts := range wr.Timeseries {
			n += len(ts.Samples)
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			bad = append(bad, err.Error())
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		received += n
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	q := remotewrite.DefaultQueueConfig()
	q.MaxSamplesPerSend, q.BatchSendDeadline = 10000, 50*time.Millisecond
	q.Capacity = 8_000_000 // the test appends far faster than real time: nothing may be dropped
	w, err := remotewrite.New(remotewrite.Config{
		Endpoints:       []remotewrite.EndpointConfig{{URL: srv.URL, Timeout: 10 * time.Second, Queue: q}},
		ShutdownTimeout: 20 * time.Second,
	}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	body := readCapture(t, captures[0])
	const targets = 9
	caches := make([]*TargetCache, targets)
	for i := range caches {
		tg := testTarget()
		tg.Key, tg.Node = fmt.Sprintf("node/n-%d", i), fmt.Sprintf("n-%d", i)
		caches[i] = NewTargetCache(tg, true, enrich.Label{Name: "cluster", Value: "test"})
	}
	// Every target scrapes in its own goroutine, as the manager runs them.
	var sent, compacted atomic.Int64
	var wg sync.WaitGroup
	for i, c := range caches {
		wg.Go(func() {
			for round := range 60 {
				teams := baseTeams
				if round >= 30 {
					teams = map[string]string{"kube-system": "platform", "scraper": "sre", "default": "frontend"}
				}
				ix := testIndex(uint64(1+round/30), teams)
				now := scrapeTime.Add(time.Duration(round)*15*time.Second + time.Duration(i)*time.Millisecond)
				b := body
				if (round+i)%5 == 0 {
					// Every container restarted: new cgroup ids.
					b = bytes.ReplaceAll(b, []byte(`id="/kubepods`), []byte(fmt.Sprintf(`id="/r%d/kubepods`, round)))
				}
				if (round+i)%3 == 0 {
					// Pods replaced: every series of one pod is new.
					b = bytes.ReplaceAll(b, []byte(`pod="kube-proxy-`), []byte(fmt.Sprintf(`pod="kube-proxy-r%d-`, round)))
				}
				var fetchErr error
				if (round*targets+i)%17 == 0 {
					b, fetchErr = nil, fmt.Errorf("connection refused")
				}
				before := c.labels.Table().ID
				var res *Result
				if fetchErr == nil && round%2 == 1 {
					res, _ = c.ProcessStream(bytes.NewReader(b), now, ix, nil)
				} else {
					res = c.Process(b, "", now, time.Millisecond, ix, fetchErr)
				}
				if c.labels.Table().ID != before {
					compacted.Add(1)
				}
				w.Append(res.Send)
				sent.Add(int64(len(res.Send)))
			}
		})
	}
	wg.Wait()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("writer: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("%d requests refused, first: %s", len(bad), bad[0])
	}
	if int64(received) != sent.Load() {
		t.Fatalf("received %d samples, sent %d", received, sent.Load())
	}
	if compacted.Load() == 0 {
		t.Fatal("no label table was compacted: the test misses a case")
	}
}
