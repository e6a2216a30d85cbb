package view

import (
	"math"
	"testing"
	"unsafe"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// There is one view sample per series shown (README, Memory model).
func TestViewSampleSize(t *testing.T) {
	if n := unsafe.Sizeof(ViewSample{}); n != 16 {
		t.Fatalf("ViewSample is %d bytes, want 16", n)
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
		{base, 0},
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
		{5, 8}, // near the zero origin of a view's start
		{math.MinInt64 + 1<<32, 9},
		{math.MinInt64 + 1<<32 - 1, 10},
		{math.MaxInt64 - 1<<32, 11},
		{math.MaxInt64 - 1<<32 + 1, 12},
		{math.MinInt64 + 1<<31, 13},
	}
	// Every case first in turn (the first timestamp may become the
	// offsets' origin), forwards and backwards, on one view reused.
	tv := &TargetView{}
	n := len(cases)
	for round := range 2 * n {
		order := make([]int, n)
		for k := range order {
			if round < n {
				order[k] = (round + k) % n
			} else {
				order[k] = (round - k + n) % n
			}
		}
		tv.Reset()
		for _, c := range order {
			tv.Append(model.SeriesRef{First: uint32(c), Rest: uint32(2 * c)}, cases[c].t, cases[c].v)
		}
		if len(tv.Samples) != n {
			t.Fatalf("%d samples, want %d", len(tv.Samples), n)
		}
		for i, c := range order {
			s, want := tv.Samples[i], cases[c]
			if got := tv.T(i); got != want.t {
				t.Errorf("order %v, sample %d: timestamp %d, want %d", order, i, got, want.t)
			}
			if got := s.V(); math.Float64bits(got) != math.Float64bits(want.v) {
				t.Errorf("order %v, sample %d: value %x, want %x", order, i, math.Float64bits(got), math.Float64bits(want.v))
			}
			if ref := tv.Ref(i); ref != (model.SeriesRef{First: uint32(c), Rest: uint32(2 * c)}) {
				t.Errorf("order %v, sample %d: ref %v", order, i, ref)
			}
		}
	}
}
