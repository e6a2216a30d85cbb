package remotewrite

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	commonmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// TestGroupReloadKeepsQueuedData: an unchanged endpoint keeps its Writer
// (and queue); a changed one hands over after its old queue drained, so no
// queued sample is lost and every series stays in order; a removed one
// drains too.
func TestGroupReloadKeepsQueuedData(t *testing.T) {
	for _, running := range []bool{true, false} {
		for _, disk := range []bool{false, true} {
			name := map[bool]string{true: "while sending", false: "before Run"}[running] + map[bool]string{true: ", disk queue"}[disk]
			t.Run(name, func(t *testing.T) { testGroupReload(t, running, disk) })
		}
	}
}

// With disk, a's queue is on disk: the changed endpoint's new Writer opens
// the same directory once the old one drained and released it.
func testGroupReload(t *testing.T, running, disk bool) {
	down := make(chan struct{}) // closed: the receivers answer again
	respond := func(int) response {
		select {
		case <-down:
			return response{status: http.StatusNoContent}
		default:
			return response{status: http.StatusServiceUnavailable}
		}
	}
	a, b := newReceiver(t, respond), newReceiver(t, respond)
	ea, eb := testEndpoint(a.url()), testEndpoint(b.url())
	if disk {
		ea.Queue.Dir = t.TempDir()
	}
	cfg := Config{Endpoints: []EndpointConfig{ea, eb}, ShutdownTimeout: 5 * time.Second}
	g, err := NewGroup(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := func() { go func() { done <- g.Run(ctx) }() }
	if running {
		start()
	}
	before := slices.Clone(*g.cur.Load())

	s := newSeries("__name__", "up", "job", "x")
	for i := range 50 {
		g.Append([]model.Sample{s.at(int64(i), float64(i))})
	}

	if running {
		eventually(t, 5*time.Second, "both endpoints retrying", func() bool { return a.requestCount() > 0 && b.requestCount() > 0 })
	}
	// Same settings, written elsewhere (Origin differs): nothing changes.
	same := cfg
	same.Endpoints = []EndpointConfig{ea, eb}
	same.Endpoints[0].Origin = Origin{File: "f.yml", Index: 3, Line: 9}
	if err := g.Apply(same); err != nil {
		t.Fatal(err)
	}
	if after := *g.cur.Load(); after[0] != before[0] || after[1] != before[1] {
		t.Fatal("an unchanged endpoint got a new Writer")
	}

	// a gets a header (changed), b is removed, while both hold 50 samples.
	ea2 := ea
	ea2.Headers = map[string]string{"X-Scope-OrgID": "t1"}
	if err := g.Apply(Config{Endpoints: []EndpointConfig{ea2}, ShutdownTimeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	for i := 50; i < 100; i++ {
		g.Append([]model.Sample{s.at(int64(i), float64(i))})
	}
	close(down)
	if !running {
		start()
	}
	eventually(t, 10*time.Second, "all samples at a, the first 50 at b", func() bool {
		return a.acceptedSamples() == 100 && b.acceptedSamples() == 50
	})
	got := a.samplesOf(s)
	for i, smp := range got {
		if smp.Timestamp != int64(i) {
			t.Fatalf("sample %d at a has timestamp %d: order lost across the hand-over", i, smp.Timestamp)
		}
	}
	if a.headers.Get("X-Scope-OrgID") != "t1" {
		t.Errorf("last request to a without the new header: %v", a.headers)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) == 0 {
		t.Fatal("no metrics gathered")
	}
}

// TestRelabelerDropsAndRewrites checks write_relabel_configs on samples of
// two producers and across a compaction of the producer's table.
func TestRelabelerDropsAndRewrites(t *testing.T) {
	cfgs := []*relabel.Config{
		{SourceLabels: commonmodel.LabelNames{"__name__"}, Regex: relabel.MustNewRegexp("drop_.*"), Action: relabel.Drop, Separator: ";"},
		{SourceLabels: commonmodel.LabelNames{"ns"}, Regex: relabel.MustNewRegexp("(.*)"), TargetLabel: "namespace", Replacement: "$1", Action: relabel.Replace, Separator: ";"},
		{Regex: relabel.MustNewRegexp("ns"), Action: relabel.LabelDrop, Separator: ";", Replacement: "$1"},
	}
	for _, c := range cfgs {
		if err := c.Validate(commonmodel.UTF8Validation); err != nil {
			t.Fatal(err)
		}
	}
	r := newRelabeler(cfgs)
	t1, t2 := newTarget(1), newTarget(2)
	keep := t1.series(pairs("__name__", "a", "ns", "x")...)
	drop := t1.series(pairs("__name__", "drop_me", "ns", "x")...)
	other := t2.series(pairs("__name__", "b", "ns", "y")...)
	in := []model.Sample{keep.at(1, 1), drop.at(1, 2), other.at(1, 3)}
	in[0].Table, in[1].Table = drop.Table, drop.Table // one snapshot per producer, as a scrape hands over
	out := r.apply(in)
	if len(*out) != 2 {
		t.Fatalf("got %d samples, want 2", len(*out))
	}
	want := []string{"__name__=a,namespace=x,", "__name__=b,namespace=y,"}
	for i, smp := range *out {
		if got := seriesKey(testSeries{Table: smp.Table, Ref: smp.Ref}); got != want[i] {
			t.Errorf("sample %d: %s, want %s", i, got, want[i])
		}
		if smp.Table.Key != uint64(i+1) {
			t.Errorf("sample %d: table key %d, want the producer's %d (shard order)", i, smp.Table.Key, i+1)
		}
	}
	r.release(out)

	// After a compaction the producer's refs mean other series.
	t1.in.Compact(func(visit func(*model.SeriesRef)) { ref := keep.Ref; visit(&ref) })
	k2 := t1.series(pairs("__name__", "drop_two", "ns", "x")...)
	out = r.apply([]model.Sample{k2.at(2, 1)})
	if len(*out) != 0 {
		t.Errorf("drop_two kept after compaction: %d samples", len(*out))
	}
	r.release(out)
}

// BenchmarkRelabelerApply is the steady state of write_relabel_configs: every
// series seen before, so a sample costs a cache lookup.
func BenchmarkRelabelerApply(b *testing.B) {
	cfgs := []*relabel.Config{
		{SourceLabels: commonmodel.LabelNames{"__name__"}, Regex: relabel.MustNewRegexp("drop_.*"), Action: relabel.Drop, Separator: ";", Replacement: "$1"},
		{Regex: relabel.MustNewRegexp("id"), Action: relabel.LabelDrop, Separator: ";", Replacement: "$1"},
	}
	for _, c := range cfgs {
		if err := c.Validate(commonmodel.UTF8Validation); err != nil {
			b.Fatal(err)
		}
	}
	r := newRelabeler(cfgs)
	tg := newTarget(1)
	var refs []model.SeriesRef
	for i := range 10_000 {
		refs = append(refs, tg.in.Intern(pairs("__name__", "container_cpu_usage_seconds_total", "id", strconv.Itoa(i), "namespace", "ns"+strconv.Itoa(i%50))))
	}
	tab := tg.in.Table()
	in := make([]model.Sample, len(refs))
	for i, ref := range refs {
		in[i] = model.Sample{Table: tab, Ref: ref, T: 1, V: 1}
	}
	r.release(r.apply(in)) // warm the cache
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r.release(r.apply(in))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(in)), "ns/sample")
}
