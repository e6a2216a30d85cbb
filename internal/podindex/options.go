package podindex

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// Defaults.
const (
	// DefaultDeletedGrace: cAdvisor keeps reporting a deleted pod's cgroup
	// until its next housekeeping drops it, and scrapes in flight still carry
	// it; five minutes also matches Prometheus's lookback.
	DefaultDeletedGrace = 5 * time.Minute
	// DefaultUnknownGrace covers the relist after a watch error (tens of
	// seconds on large clusters) and the initial sync.
	DefaultUnknownGrace = time.Minute
	// DefaultMaxTombstones bounds the memory tombstones take: 10,000 of them
	// held 9.4 MB in TestMemoryPerTombstone (six labels a pod, map capacity
	// left from 30,000 live pods included). Past it the oldest are forgotten
	// early and their pods answer like unknown ones; 10,000 pods deleted
	// within the deleted grace is a very large rollout.
	DefaultMaxTombstones = 10000
)

// Options configure an Index.
type Options struct {
	// Node restricts the index to the pods bound to that node (kubelet mode:
	// field selector spec.nodeName=Node). Empty watches every pod.
	Node string
	// Labels selects the pod labels to add (Allow, or AllowAll for "*") and
	// the prefix of their names.
	Labels enrich.KeyMapper
	// Workload adds workload and workload_type.
	Workload bool
	// DeletedGrace is how long a deleted pod's tombstone answers OnNode with
	// Yes and keeps its labels.
	DeletedGrace time.Duration
	// UnknownGrace is how long after the initial sync or a list/watch error
	// an unknown pod is Unknown rather than No.
	UnknownGrace time.Duration
	// MaxTombstones bounds the tombstones kept.
	MaxTombstones int
	// Resync is the sources' resync period (0: none).
	Resync time.Duration

	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are not registered
	// Now is the clock (tests inject one); nil means time.Now.
	Now func() time.Time
}

// DefaultOptions returns the options with every default set.
func DefaultOptions() Options {
	return Options{
		DeletedGrace:  DefaultDeletedGrace,
		UnknownGrace:  DefaultUnknownGrace,
		MaxTombstones: DefaultMaxTombstones,
	}
}

// Config is validated Options.
type Config struct{ o Options }

// Validate reports what is wrong with the options.
func (o Options) Validate() error {
	var errs []error
	if o.DeletedGrace < 0 {
		errs = append(errs, fmt.Errorf("pod index: deleted grace %v is negative", o.DeletedGrace))
	}
	if o.UnknownGrace < 0 {
		errs = append(errs, fmt.Errorf("pod index: unknown grace %v is negative", o.UnknownGrace))
	}
	if o.MaxTombstones < 0 {
		errs = append(errs, fmt.Errorf("pod index: max tombstones %d is negative", o.MaxTombstones))
	}
	if o.Resync < 0 {
		errs = append(errs, fmt.Errorf("pod index: resync period %v is negative", o.Resync))
	}
	if o.Logger == nil {
		errs = append(errs, errors.New("pod index: no logger"))
	}
	if o.Labels.Prefix != "" && !model.IsValidLabelName(o.Labels.Prefix) {
		errs = append(errs, fmt.Errorf("pod index: label prefix %q is not a valid label name", o.Labels.Prefix))
	}
	for k := range o.Labels.Allow {
		if k == "" {
			errs = append(errs, errors.New("pod index: empty pod label key in the allowlist"))
		}
	}
	return errors.Join(errs...)
}

// Config validates the options.
func (o Options) Config() (Config, error) {
	if err := o.Validate(); err != nil {
		return Config{}, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return Config{o: o}, nil
}
