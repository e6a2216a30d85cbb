package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relay"
)

// limitsOptions bound what one target may send (relay.Limits): Prometheus's
// scrape limits under their names, and the timestamp bounds of the receiver.
type limitsOptions struct {
	SampleLimit           int
	LabelLimit            int
	LabelNameLengthLimit  int
	LabelValueLengthLimit int
	OutOfBoundsFuture     time.Duration
	OutOfBoundsPast       time.Duration
}

func (o *limitsOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.SampleLimit, "sample-limit", 0, "Most samples one scrape of a target may have; over it the scrape fails as a whole (up=0, nothing sent), as Prometheus's sample_limit. 0: no limit.")
	fs.IntVar(&o.LabelLimit, "label-limit", 0, "Most labels a series may have, target labels included; a series over it fails the whole scrape, as Prometheus's label_limit. 0: no limit.")
	fs.IntVar(&o.LabelNameLengthLimit, "label-name-length-limit", 0, "Longest label name (bytes) a series may have; else the scrape fails, as Prometheus's label_name_length_limit. 0: no limit.")
	fs.IntVar(&o.LabelValueLengthLimit, "label-value-length-limit", 0, "Longest label value (bytes) a series may have; else the scrape fails, as Prometheus's label_value_length_limit. 0: no limit.")
	fs.DurationVar(&o.OutOfBoundsFuture, "out-of-bounds-future", 10*time.Minute, "Samples whose timestamp is further ahead of the scrape time are dropped (a receiver refuses them with their whole batch; Mimir's creation grace period is 10m). 0: no bound.")
	fs.DurationVar(&o.OutOfBoundsPast, "out-of-bounds-past", time.Hour, "Samples whose timestamp is further behind the scrape time are dropped (Prometheus's TSDB refuses samples older than its head, about 1h). 0: no bound.")
}

func (o *limitsOptions) Validate() error {
	var errs []error
	for _, f := range []struct {
		flag string
		v    int
	}{{"--sample-limit", o.SampleLimit}, {"--label-limit", o.LabelLimit}, {"--label-name-length-limit", o.LabelNameLengthLimit}, {"--label-value-length-limit", o.LabelValueLengthLimit}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s=%d: must be 0 (no limit) or positive", f.flag, f.v))
		}
	}
	if o.OutOfBoundsFuture < 0 {
		errs = append(errs, fmt.Errorf("--out-of-bounds-future=%s: must be 0 (no bound) or positive", o.OutOfBoundsFuture))
	}
	if o.OutOfBoundsPast < 0 {
		errs = append(errs, fmt.Errorf("--out-of-bounds-past=%s: must be 0 (no bound) or positive", o.OutOfBoundsPast))
	}
	return errors.Join(errs...)
}

// Config is the validated limits.
func (o *limitsOptions) Config() relay.Limits {
	return relay.Limits{
		SampleLimit: o.SampleLimit, LabelLimit: o.LabelLimit,
		LabelNameLengthLimit: o.LabelNameLengthLimit, LabelValueLengthLimit: o.LabelValueLengthLimit,
		OutOfBoundsFuture: o.OutOfBoundsFuture, OutOfBoundsPast: o.OutOfBoundsPast,
	}
}

// defaultScrapeTimeout is Prometheus's global scrape_timeout; an interval
// shorter than it lowers the timeout to the interval.
const defaultScrapeTimeout = 10 * time.Second
