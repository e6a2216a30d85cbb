package view

import (
	"math"
	"testing"
	"unsafe"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// There is one view sample per series shown (README, Memory model).
func TestViewSampleSize(t *testing.T) {
	if n := unsafe.Sizeof(ViewSample{}); n != 20 {
		t.Fatalf("ViewSample is %d bytes, want 20", n)
	}
}

// Every timestamp and value comes back exactly: timestamps near the scrape
// time are kept as 32-bit offsets, the others (and those that fall on the
// offsets' reserved values) whole; values bit for bit.
func TestViewSampleExact(t *testing.T) {
	const base = int64(1_700_000_000_000)
	staleNaN := math.Float64frombits(0x7ff0000000000002)
	cases := []struct {
		t int64
		v float64
	}{
		{NoTimestamp, 1},
		{base, 0}, // the first timestamp: the offsets' origin
		{base + 1, math.Copysign(0, -1)},
		{base - 1, staleNaN},
		{base + math.MaxInt32, math.Inf(1)},
		{base + math.MaxInt32 + 1, math.Inf(-1)},
		{base + math.MinInt32, math.MaxFloat64},                 // the offset of no timestamp
		{base + math.MinInt32 + 1, math.SmallestNonzeroFloat64}, // the offset of a far one
		{base + math.MinInt32 + 2, -1.5},
		{base + math.MinInt32 - 1, 2.5},
		{0, math.NaN()},
		{-1, 3},
		{math.MaxInt64, 4},
		{math.MinInt64 + 1, 5},
		{NoTimestamp, 6},
		{base + 30_000, 7},
	}
	tv := &TargetView{}
	// Each round starts on a view used before (with another origin and a
	// far sample); the first with one more sample.
	for round := range 2 {
		tv.Reset()
		tv.Append(model.SeriesRef{}, math.MaxInt64-7, 8)
		tv.Append(model.SeriesRef{}, base-1, 8)
		tv.Reset()
		skip := 0
		if round == 0 {
			tv.Append(model.SeriesRef{}, NoTimestamp, 9)
			skip = 1
		}
		for i, c := range cases {
			tv.Append(model.SeriesRef{First: uint32(i), Rest: uint32(2 * i)}, c.t, c.v)
		}
		if len(tv.Samples) != skip+len(cases) {
			t.Fatalf("%d samples, want %d", len(tv.Samples), skip+len(cases))
		}
		for i, c := range cases {
			s := tv.Samples[skip+i]
			if got := tv.T(skip + i); got != c.t {
				t.Errorf("round %d, sample %d: timestamp %d, want %d", round, i, got, c.t)
			}
			if got := s.V(); math.Float64bits(got) != math.Float64bits(c.v) {
				t.Errorf("round %d, sample %d: value %x, want %x", round, i, math.Float64bits(got), math.Float64bits(c.v))
			}
			if s.Ref != (model.SeriesRef{First: uint32(i), Rest: uint32(2 * i)}) {
				t.Errorf("round %d, sample %d: ref %v", round, i, s.Ref)
			}
		}
	}
}
