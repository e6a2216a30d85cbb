package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/memlimit"
)

// memoryOptions set the Go runtime's soft memory limit from the container's.
type memoryOptions struct {
	LimitRatio float64
}

func (o *memoryOptions) AddFlags(fs *pflag.FlagSet) {
	fs.Float64Var(&o.LimitRatio, "memory-limit-ratio", 0.9, "Set the Go runtime's soft memory limit (GOMEMLIMIT) to this fraction of the container's cgroup memory limit, when it has one and $GOMEMLIMIT is not set: near it the garbage collector works harder and returns freed memory sooner, instead of the container being OOM-killed. 0 turns it off.")
}

func (o *memoryOptions) Validate() error {
	if o.LimitRatio < 0 || o.LimitRatio > 1 {
		return fmt.Errorf("--memory-limit-ratio=%g: want 0 (off) to 1", o.LimitRatio)
	}
	return nil
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
