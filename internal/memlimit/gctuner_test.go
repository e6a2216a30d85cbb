package memlimit

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

const mib = 1 << 20

func TestGCTunerPercent(t *testing.T) {
	cfg := GCTunerConfig{MaxPercent: 15, MinPercent: 5, Headroom: 16 * mib, Interval: time.Second}
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, 15},         // before the first GC
		{40 * mib, 15},  // 50 nodes: 40% allowed, capped at MaxPercent
		{106 * mib, 15}, // 16 MiB is just over 15%
		{128 * mib, 12}, // 12.5%
		{200 * mib, 8},  // 8%
		{300 * mib, 5},  // 500 nodes: 5.3%
		{2048 * mib, 5}, // never below MinPercent
		{1<<64 - 1, 5},  // no overflow
	} {
		if got := cfg.Percent(tc.live); got != tc.want {
			t.Errorf("Percent(%d MiB) = %d, want %d", tc.live/mib, got, tc.want)
		}
	}
}

func TestGCTunerValidate(t *testing.T) {
	good := GCTunerConfig{MaxPercent: 15, MinPercent: 5, Headroom: mib, Interval: time.Second}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*GCTunerConfig){
		"min 0":         func(c *GCTunerConfig) { c.MinPercent = 0 },
		"max below min": func(c *GCTunerConfig) { c.MaxPercent = 4 },
		"no headroom":   func(c *GCTunerConfig) { c.Headroom = 0 },
		"no interval":   func(c *GCTunerConfig) { c.Interval = 0 },
	} {
		c := good
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate passed %+v", name, c)
		}
	}
}

// TestGCTunerSetsOnChange follows a live heap that grows and shrinks: the
// percent is set when it changes only.
func TestGCTunerSetsOnChange(t *testing.T) {
	var live uint64
	var sets []int
	tu := &GCTuner{
		cfg:  GCTunerConfig{MaxPercent: 15, MinPercent: 5, Headroom: 16 * mib, Interval: time.Second},
		live: func() uint64 { return live },
		set:  func(p int) int { sets = append(sets, p); return 0 },
	}
	for _, l := range []uint64{0, 50 * mib, 200 * mib, 200 * mib, 400 * mib, 50 * mib} {
		live = l
		tu.Tune()
	}
	want := []int{15, 8, 5, 15}
	if len(sets) != len(want) {
		t.Fatalf("set %v, want %v", sets, want)
	}
	for i := range want {
		if sets[i] != want[i] {
			t.Fatalf("set %v, want %v", sets, want)
		}
	}
	if tu.Percent() != 15 {
		t.Fatalf("Percent() = %d, want 15", tu.Percent())
	}
}

// TestGCTunerOnTheRuntime runs the real tuner: with a live heap of about
// 64 MiB and 8 MiB of headroom the runtime's GC percent becomes 12.
func TestGCTunerOnTheRuntime(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	held := make([]byte, 64*mib)
	for i := range held {
		held[i] = byte(i)
	}
	runtime.GC()
	tu := NewGCTuner(GCTunerConfig{MaxPercent: 15, MinPercent: 5, Headroom: 8 * mib, Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tu.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for gcPercent() != 12 {
		if time.Now().After(deadline) {
			t.Fatalf("GC percent not tuned to 12 (live heap about 64 MiB)")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	runtime.KeepAlive(held)
}

func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
