package relay

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"
)

// hostileServer serves, by path, the payloads of misbehaving targets.
func hostileServer(t *testing.T) *httptest.Server {
	now := time.Now().UnixMilli()
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	// 64 MiB of comment lines, under 100 KiB gzipped: no sample, no long
	// line, only the inflated size can stop it.
	block := bytes.Repeat([]byte("# padding padding padding\n"), 1<<15)
	for n := 0; n < 64<<20; n += len(block) {
		_, _ = zw.Write(block)
	}
	_ = zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		switch r.URL.Path {
		case "/healthy":
			_, _ = io.WriteString(w, "ok_total{a=\"1\"} 1\nok_total{a=\"2\"} 2\n")
		case "/many":
			for i := range 1000 {
				_, _ = io.WriteString(w, "many{i=\""+strings.Repeat("x", i%7)+string(rune('a'+i%26))+"\",n=\""+time.Duration(i).String()+"\"} 1\n")
			}
		case "/longline":
			_, _ = io.WriteString(w, "long{v=\""+strings.Repeat("v", 4<<20)+"\"} 1\n")
		case "/skewed":
			_, _ = io.WriteString(w, "skew_a 1 "+itoa(now+365*24*3600*1000)+"\nskew_b 2 "+itoa(now-365*24*3600*1000)+"\nskew_ok 3\n")
		case "/bomb":
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(bomb.Bytes())
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func TestManagerHostileTargets(t *testing.T) {
	srv := hostileServer(t)
	reg := prometheus.NewRegistry()
	v := view.NewView()
	sink := &fakeSink{}
	// The client asks for gzip (Go's transport does unless told not to) and
	// inflates it: the body size limit counts inflated bytes.
	f := &scrape.HTTPFetcher{Client: &http.Client{}, Limit: 8 << 20, Permission: "x"}
	m := NewManager(ManagerConfig{
		Interval: time.Second, Timeout: 5 * time.Second, MaxConcurrency: 4, HonorTimestamps: true,
		NodeFetcher: f, PlainFetcher: f, Namespaces: staticNamespaces{testIndex(1, baseTeams)}, View: v, Sink: sink,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg,
		Limits: Limits{SampleLimit: 500, LabelLimit: 20, LabelNameLengthLimit: 64, LabelValueLengthLimit: 1024,
			OutOfBoundsFuture: 10 * time.Minute, OutOfBoundsPast: time.Hour},
	})
	t.Cleanup(m.Stop)
	var targets []*scrape.Target
	for _, p := range []string{"/healthy", "/many", "/longline", "/skewed", "/bomb"} {
		targets = append(targets, srvTarget(srv, "target/"+p, p))
	}
	errs := m.ScrapeAll(context.Background(), targets)
	want := map[string]string{"/healthy": "", "/many": LimitSample, "/longline": LimitValueLength, "/skewed": "", "/bomb": "body_too_large"}
	for i, tg := range targets {
		w := want[tg.Path]
		if (w == "") != (errs[i] == nil) || (w != "" && ErrorReason(errs[i]) != w) {
			t.Errorf("%s: err %v, want reason %q", tg.Path, errs[i], w)
		}
		if w != "" {
			if got := testutil.ToFloat64(m.metrics.errors.WithLabelValues(tg.Key, w)); got != 1 {
				t.Errorf("%s: scrape_errors_total{reason=%q} = %v", tg.Path, w, got)
			}
		}
	}
	if got := testutil.ToFloat64(m.bounds.outOfBounds.WithLabelValues("target//skewed", BoundFuture)); got != 1 {
		t.Errorf("out_of_bounds{too_far_in_future} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.bounds.outOfBounds.WithLabelValues("target//skewed", BoundPast)); got != 1 {
		t.Errorf("out_of_bounds{too_old} = %v, want 1", got)
	}
	if n := sink.count("__name__", "skew_ok", false); n != 1 {
		t.Errorf("the in-bounds sample of the skewed target: sent %d times, want 1", n)
	}
	if n := sink.count("__name__", "skew_a", false) + sink.count("__name__", "skew_b", false); n != 0 {
		t.Errorf("out-of-bounds samples sent: %d", n)
	}
	if n := sink.count("__name__", "ok_total", false); n != 2 {
		t.Errorf("healthy target: %d samples sent, want 2", n)
	}
	if n := sink.count("__name__", "many", false) + sink.count("__name__", "long", false); n != 0 {
		t.Errorf("a scrape over a limit sent %d samples", n)
	}
	// Without label limits the 4 MiB line parses, growing the read buffer,
	// which then goes to the GC instead of a free list.
	m2 := NewManager(ManagerConfig{
		Interval: time.Second, Timeout: 5 * time.Second, MaxConcurrency: 4, HonorTimestamps: true,
		NodeFetcher: f, PlainFetcher: f, Namespaces: staticNamespaces{testIndex(1, baseTeams)}, View: view.NewView(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	t.Cleanup(m2.Stop)
	if errs := m2.ScrapeAll(context.Background(), targets[2:3]); errs[0] != nil {
		t.Fatalf("long line without limits: %v", errs[0])
	}
	if len(m2.chunks) != 0 {
		t.Errorf("the grown read buffer was pooled")
	}
	for range len(m.chunks) {
		b, _ := m.chunks.get()
		if cap(b) > maxPooledChunk {
			t.Errorf("a %d-byte read buffer was pooled", cap(b))
		}
	}
}
