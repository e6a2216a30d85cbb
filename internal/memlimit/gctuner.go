package memlimit

import (
	"context"
	"fmt"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// GCTunerConfig bounds the heap's growth between garbage collections in
// bytes as well as in percent. GOGC alone lets a heap grow by a fixed share
// of itself: a big relay (hundreds of nodes on one replica) pays that share
// in tens of MiB while its heap is almost all a long-lived, pointer-free
// series cache that a GC cycle barely scans. A small one, whose heap churns
// more relative to its size, keeps MaxPercent.
type GCTunerConfig struct {
	MaxPercent int           // the GC percent while the headroom allows it
	MinPercent int           // never below this, whatever the live heap
	Headroom   int64         // bytes the heap may grow over the live heap
	Interval   time.Duration // how often the live heap is read
}

// Validate checks the bounds once, before Run.
func (c GCTunerConfig) Validate() error {
	switch {
	case c.MinPercent < 1 || c.MaxPercent < c.MinPercent:
		return fmt.Errorf("GC tuner: percents %d..%d: want 1 <= min <= max", c.MinPercent, c.MaxPercent)
	case c.Headroom <= 0:
		return fmt.Errorf("GC tuner: headroom %d bytes: want > 0", c.Headroom)
	case c.Interval <= 0:
		return fmt.Errorf("GC tuner: interval %v: want > 0", c.Interval)
	}
	return nil
}

// Percent is the GC percent for a live heap of live bytes: the one that
// lets it grow by Headroom, within MinPercent..MaxPercent.
func (c GCTunerConfig) Percent(live uint64) int {
	if live == 0 {
		return c.MaxPercent
	}
	p := int(uint64(c.Headroom) * 100 / live)
	return max(c.MinPercent, min(c.MaxPercent, p))
}

// GCTuner applies a GCTunerConfig: every Interval it reads the live heap
// (as of the last GC) and sets the GC percent when it changes.
type GCTuner struct {
	cfg  GCTunerConfig
	live func() uint64 // the live heap in bytes, 0 before the first GC
	set  func(int) int // debug.SetGCPercent
	cur  int
}

// NewGCTuner returns a tuner of the running process's garbage collector.
func NewGCTuner(cfg GCTunerConfig) *GCTuner {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	live := func() uint64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0 // not in this runtime: MaxPercent
		}
		return sample[0].Value.Uint64()
	}
	return &GCTuner{cfg: cfg, live: live, set: debug.SetGCPercent}
}

// Percent is the GC percent the tuner set last (0: none yet).
func (t *GCTuner) Percent() int { return t.cur }

// Tune sets the GC percent for the live heap now, if it changed.
func (t *GCTuner) Tune() {
	if p := t.cfg.Percent(t.live()); p != t.cur {
		t.set(p)
		t.cur = p
	}
}

// Run tunes until ctx is done.
func (t *GCTuner) Run(ctx context.Context) {
	t.Tune()
	tick := time.NewTicker(t.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.Tune()
		}
	}
}
