package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/memlimit"
)

// memoryOptions set the Go runtime's soft memory limit from the container's,
// and how far the heap may grow between garbage collections.
type memoryOptions struct {
	LimitRatio    float64
	GCHeadroomMiB int
}

// minGOGC is the GC percent the headroom cap never goes below: under pod
// churn each step down costs CPU.
const minGOGC = 5

func (o *memoryOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.GCHeadroomMiB, "gc-headroom-mib", 16, fmt.Sprintf("Unless $GOGC is set, let the heap grow by at most this many MiB over the live heap between garbage collections, by lowering the GC percent from %d down to %d as the live heap grows (a relay of a few hundred nodes): the series cache is long-lived and pointer-free, so a collection costs little while the growth GOGC alone allows would cost tens of MiB. 0: the GC percent stays %d.", defaultGOGC, minGOGC, defaultGOGC))
	fs.Float64Var(&o.LimitRatio, "memory-limit-ratio", 0.9, "Set the Go runtime's soft memory limit (GOMEMLIMIT) to this fraction of the container's cgroup memory limit, when it has one and $GOMEMLIMIT is not set: near it the garbage collector works harder and returns freed memory sooner, instead of the container being OOM-killed. 0 turns it off.")
}

func (o *memoryOptions) Validate() error {
	if o.LimitRatio < 0 || o.LimitRatio > 1 {
		return fmt.Errorf("--memory-limit-ratio=%g: want 0 (off) to 1", o.LimitRatio)
	}
	if o.GCHeadroomMiB < 0 || o.GCHeadroomMiB > maxGCHeadroomMiB {
		return fmt.Errorf("--gc-headroom-mib=%d: want 0 (off) to %d", o.GCHeadroomMiB, maxGCHeadroomMiB)
	}
	if o.GCHeadroomMiB > 0 {
		return o.gcTunerConfig().Validate()
	}
	return nil
}

// maxGCHeadroomMiB (1 TiB) keeps the headroom in bytes far from overflow.
const maxGCHeadroomMiB = 1 << 20

func (o *memoryOptions) gcTunerConfig() memlimit.GCTunerConfig {
	return memlimit.GCTunerConfig{MaxPercent: defaultGOGC, MinPercent: minGOGC, Headroom: int64(o.GCHeadroomMiB) << 20, Interval: 5 * time.Second}
}

// gcTuner is the GC tuner the validated flags ask for, nil for none.
func (o *memoryOptions) gcTuner() *memlimit.GCTuner {
	if o.GCHeadroomMiB == 0 {
		return nil
	}
	return memlimit.NewGCTuner(o.gcTunerConfig())
}

// apply sets the soft memory limit from fsys's cgroup files and returns it
// (0: left as it was).
func (o *memoryOptions) apply(fsys memlimit.FS, logger *slog.Logger) int64 {
	if o.LimitRatio == 0 || os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit, ok, err := memlimit.Limit(fsys)
	if err != nil {
		logger.Warn("memory limit of the cgroup not read: GOMEMLIMIT left unset", "err", err)
		return 0
	}
	if !ok {
		return 0
	}
	soft := int64(float64(limit) * o.LimitRatio)
	debug.SetMemoryLimit(soft)
	logger.Info("Go soft memory limit set from the cgroup's", "cgroup_limit_bytes", limit, "gomemlimit_bytes", soft, "ratio", o.LimitRatio)
	return soft
}
