package main

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
	"testing/fstest"
)

func TestMemoryLimitFromCgroup(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1)) // restore
	fsys := fstest.MapFS{
		"proc/self/cgroup":         {Data: []byte("0::/\n")},
		"sys/fs/cgroup/memory.max": {Data: []byte("1073741824\n")},
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	t.Setenv("GOMEMLIMIT", "")

	o := &memoryOptions{LimitRatio: 0.9}
	if got, want := o.apply(fsys, logger), int64(966367641); got != want {
		t.Fatalf("apply = %d, want %d", got, want)
	}
	if got := debug.SetMemoryLimit(-1); got != int64(966367641) {
		t.Fatalf("runtime limit %d after apply", got)
	}

	debug.SetMemoryLimit(math.MaxInt64)
	off := &memoryOptions{LimitRatio: 0}
	if got := off.apply(fsys, logger); got != 0 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("ratio 0 set a limit (%d)", got)
	}
	t.Setenv("GOMEMLIMIT", "300MiB")
	if got := o.apply(fsys, logger); got != 0 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("$GOMEMLIMIT set, yet apply set %d", got)
	}
	t.Setenv("GOMEMLIMIT", "")
	if got := o.apply(fstest.MapFS{"proc/self/cgroup": {Data: []byte("0::/\n")}}, logger); got != 0 {
		t.Fatalf("no cgroup limit, yet apply set %d", got)
	}

	for _, r := range []float64{-0.1, 1.5} {
		if err := (&memoryOptions{LimitRatio: r}).Validate(); err == nil {
			t.Errorf("--memory-limit-ratio=%g accepted", r)
		}
	}
}

func TestGCHeadroomFlag(t *testing.T) {
	for _, mib := range []int{-1, maxGCHeadroomMiB + 1, 1 << 50} {
		if err := (&memoryOptions{GCHeadroomMiB: mib}).Validate(); err == nil {
			t.Errorf("--gc-headroom-mib=%d accepted", mib)
		}
	}
	for _, mib := range []int{0, 1, 16, maxGCHeadroomMiB} {
		if err := (&memoryOptions{GCHeadroomMiB: mib}).Validate(); err != nil {
			t.Errorf("--gc-headroom-mib=%d: %v", mib, err)
		}
	}
	if (&memoryOptions{GCHeadroomMiB: 0}).gcTuner() != nil {
		t.Error("--gc-headroom-mib=0 made a GC tuner")
	}
	if (&memoryOptions{GCHeadroomMiB: 16}).gcTuner() == nil {
		t.Error("--gc-headroom-mib=16 made no GC tuner")
	}
}
