package relay

import (
	"runtime"
	"testing"
	"time"
)

// TestProcessKeepsNoPayload: the labels of new series are read without a
// copy (TextScanner.AppendLabels), yet once a scrape ends nothing of the
// cache points into its payload, which the collector can then take (an
// outsized buffer is not pooled, pools.go).
func TestProcessKeepsNoPayload(t *testing.T) {
	c := NewTargetCache(testTarget(), true)
	buf := append([]byte(nil), readCapture(t, captures[0])...)
	collected := make(chan struct{})
	runtime.AddCleanup(&buf[0], func(ch chan struct{}) { close(ch) }, collected)
	res := c.Process(buf, "", scrapeTime, time.Second, testIndex(1, baseTeams), nil)
	if res.Err != nil || res.SeriesAdded == 0 {
		t.Fatalf("the scrape failed or added nothing: %v", res.Err)
	}
	buf = nil
	for range 20 {
		runtime.GC()
		select {
		case <-collected:
			runtime.KeepAlive(c)
			runtime.KeepAlive(res)
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("the payload is still reachable from the cache after the scrape")
}
