package view_test

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	commonmodel "github.com/prometheus/common/model"

	"github.com/prometheus/common/expfmt"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/captures"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relay"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"
)

var scrapeTime = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// nodes scrapes body as n nodes' targets into a new View; scrape(k) scrapes
// every node again, k seconds after the first.
func nodes(t testing.TB, body []byte, n int) (v *view.View, scrapeAll func(k int)) {
	v = view.NewView()
	caches := make([]*relay.TargetCache, n)
	for i := range caches {
		node := fmt.Sprintf("node-%02d", i)
		caches[i] = relay.NewTargetCache(&scrape.Target{Key: "node/" + node, Node: node, Address: node + ":10250", Path: "/metrics/cadvisor"}, true)
	}
	scrapeAll = func(k int) {
		for _, c := range caches {
			res := c.Process(body, "text/plain", scrapeTime.Add(time.Duration(k)*time.Second), time.Second, nil, nil)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			c.Recycle(v.Set(res.View))
		}
	}
	scrapeAll(0)
	return v, scrapeAll
}

// View.WriteText, which takes each target's view when it writes it, writes
// what WriteText of the views held for the whole render writes, on every
// capture (kubelet_metrics has histograms and summaries), for every node or
// a few, in every escaping.
func TestViewWriteTextAsHeld(t *testing.T) {
	for short := range captures.Files {
		body, err := captures.Read(short)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := nodes(t, body, 3)
		for _, filter := range []func(*view.TargetView) bool{nil, func(tv *view.TargetView) bool { return tv.Target.Node != "node-01" }} {
			for _, scheme := range []commonmodel.EscapingScheme{commonmodel.NoEscaping, commonmodel.UnderscoreEscaping} {
				held := v.Targets()
				var want, got bytes.Buffer
				if err := view.WriteTextEscaped(&want, held, filter, scheme); err != nil {
					t.Fatal(err)
				}
				v.Release(held)
				if err := v.WriteText(&got, filter, scheme); err != nil {
					t.Fatal(err)
				}
				if got.String() != want.String() {
					t.Errorf("%s (filter %v, %v): the live render differs from the held one", short, filter != nil, scheme)
				}
				if strings.Count(got.String(), "\n") < 3 {
					t.Errorf("%s: nothing rendered", short)
				}
			}
		}
	}
}

// hookWriter calls during on every write.
type hookWriter struct {
	bytes.Buffer
	during func()
}

func (w *hookWriter) Write(p []byte) (int, error) {
	w.during()
	return w.Buffer.Write(p)
}

// While View.WriteText writes to its reader, it holds at most one target's
// view (a gauge's or counter's family) and none of the others: scrapes that
// end meanwhile reuse the buffers of the views they replace. What it writes
// is still one family after the other, each once, with every node's samples.
func TestViewWriteTextHoldsOneViewAtATime(t *testing.T) {
	for _, short := range []string{"1_35", "kubelet-metrics"} {
		body, err := captures.Read(short)
		if err != nil {
			t.Fatal(err)
		}
		const n = 4
		v, scrapeAll := nodes(t, body, n)
		var want bytes.Buffer
		held := v.Targets()
		if err := view.WriteText(&want, held, nil); err != nil {
			t.Fatal(err)
		}
		v.Release(held)
		k, most := 0, 0
		w := &hookWriter{during: func() {
			inUse := 0
			tvs := v.Targets()
			for _, tv := range tvs {
				if tv.Readers() > 1 { // this check's own read, and the render's
					inUse++
				}
			}
			v.Release(tvs)
			most = max(most, inUse)
			k++
			scrapeAll(k)
		}}
		if err := v.WriteText(w, nil, commonmodel.NoEscaping); err != nil {
			t.Fatal(err)
		}
		if k < 3 {
			t.Fatalf("%s: %d writes, too few to tell", short, k)
		}
		if short == "1_35" && most > 1 {
			t.Errorf("%s: %d views held at once during the render, want at most 1", short, most)
		}
		// The same families with the same number of samples each, and
		// no family twice (the parser refuses a second TYPE line).
		count := func(text []byte) map[string]int {
			p := expfmt.NewTextParser(commonmodel.UTF8Validation)
			fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
			if err != nil {
				t.Fatalf("%s: %v", short, err)
			}
			out := map[string]int{}
			for name, f := range fams {
				out[name] = len(f.GetMetric())
			}
			return out
		}
		wantN, gotN := count(want.Bytes()), count(w.Bytes())
		if len(gotN) != len(wantN) {
			t.Errorf("%s: %d families rendered during scrapes, want %d", short, len(gotN), len(wantN))
		}
		for name, c := range wantN {
			if gotN[name] != c {
				t.Errorf("%s: family %s: %d series rendered during scrapes, want %d", short, name, gotN[name], c)
			}
		}
	}
}

// BenchmarkViewWriteText renders 20 nodes' views of a real cAdvisor
// capture: held for the whole render (View.Targets, as scrape-once), and
// taken one family at a time (View.WriteText, as /metrics).
func BenchmarkViewWriteText(b *testing.B) {
	body, err := captures.Read("1_35")
	if err != nil {
		b.Fatal(err)
	}
	v, _ := nodes(b, body, 20)
	b.Run("held", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			held := v.Targets()
			if err := view.WriteText(io.Discard, held, nil); err != nil {
				b.Fatal(err)
			}
			v.Release(held)
		}
	})
	b.Run("live", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := v.WriteText(io.Discard, nil, commonmodel.NoEscaping); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Renders running while other goroutines scrape read only views no scrape
// writes (go test -race), and every render is whole.
func TestViewWriteTextConcurrentWithScrapes(t *testing.T) {
	body, err := captures.Read("kubelet-metrics")
	if err != nil {
		t.Fatal(err)
	}
	v, scrapeAll := nodes(t, body, 3)
	var want bytes.Buffer
	if err := v.WriteText(&want, nil, commonmodel.NoEscaping); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for k := 1; k <= 20; k++ {
			scrapeAll(k)
		}
	}()
	for rendering := true; rendering; {
		select {
		case <-done:
			rendering = false
		default:
		}
		var got bytes.Buffer
		if err := v.WriteText(&got, nil, commonmodel.NoEscaping); err != nil {
			t.Fatal(err)
		}
		if n, m := strings.Count(got.String(), "\n"), strings.Count(want.String(), "\n"); n != m {
			t.Fatalf("a render during scrapes has %d lines, want %d", n, m)
		}
	}
}
