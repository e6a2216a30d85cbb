package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commonmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// Limits bound what one target may send, with the names and semantics of
// Prometheus's scrape config (sample_limit, label_limit,
// label_name_length_limit, label_value_length_limit): a scrape over any of
// them fails as a whole. Zero means no limit.
//
// The timestamp bounds are not Prometheus scrape options but the receiver's
// (Prometheus's TSDB out-of-bounds window, Mimir's creation grace period):
// a sample outside them would be refused with its whole batch, so it is
// dropped alone, before any queue, and the rest of the scrape goes on.
type Limits struct {
	SampleLimit           int
	LabelLimit            int
	LabelNameLengthLimit  int
	LabelValueLengthLimit int
	// OutOfBoundsFuture and OutOfBoundsPast: a target timestamp further
	// than this after (before) the scrape time is dropped. Zero: no bound.
	OutOfBoundsFuture time.Duration
	OutOfBoundsPast   time.Duration
}

// Validate reports negative limits.
func (l Limits) Validate() error {
	var errs []error
	for name, v := range map[string]int{"sample limit": l.SampleLimit, "label limit": l.LabelLimit,
		"label name length limit": l.LabelNameLengthLimit, "label value length limit": l.LabelValueLengthLimit} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s %d: must be 0 (none) or positive", name, v))
		}
	}
	if l.OutOfBoundsFuture < 0 || l.OutOfBoundsPast < 0 {
		errs = append(errs, errors.New("timestamp bounds must be 0 (none) or positive"))
	}
	return errors.Join(errs...)
}

// Limit names, as in Prometheus's scrape config; they are the reason label
// of kubelet_meta_proxy_target_scrape_errors_total.
const (
	LimitSample      = "sample_limit"
	LimitLabel       = "label_limit"
	LimitNameLength  = "label_name_length_limit"
	LimitValueLength = "label_value_length_limit"
)

// LimitError is a scrape failed because the target went over a limit.
type LimitError struct {
	Limit string // one of the Limit* names
	Value int    // the limit
	// Detail names what went over: the count, or the series and label.
	Detail string
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s exceeded (limit %d): %s", e.Limit, e.Value, e.Detail)
}

// maxShown bounds how much of a name or value an error quotes: the
// offending value may be megabytes.
const maxShown = 50

func clip(s string) string {
	if len(s) > maxShown {
		return s[:maxShown] + "..."
	}
	return s
}

// checkLabelLimits applies the label limits to a new series, as Prometheus
// does (only when a series is new to the target's cache): the count is of
// the scraped labels plus the target labels, the lengths are of the
// scraped names and values (__name__ included). Labels the relay adds from
// the Namespace are not counted: the relay's configuration bounds them.
func (l *Limits) checkLabelLimits(ls labels.Labels, targetLabels int) error {
	if l.LabelLimit > 0 {
		if n := ls.Len() + targetLabels; n > l.LabelLimit {
			return &LimitError{Limit: LimitLabel, Value: l.LabelLimit,
				Detail: fmt.Sprintf("metric %q has %d labels", clip(ls.Get(commonmodel.MetricNameLabel)), n)}
		}
	}
	if l.LabelNameLengthLimit <= 0 && l.LabelValueLengthLimit <= 0 {
		return nil
	}
	var err error
	ls.Range(func(lb labels.Label) {
		switch {
		case err != nil:
		case l.LabelNameLengthLimit > 0 && len(lb.Name) > l.LabelNameLengthLimit:
			err = &LimitError{Limit: LimitNameLength, Value: l.LabelNameLengthLimit,
				Detail: fmt.Sprintf("metric %q, label name %q is %d bytes long", clip(ls.Get(commonmodel.MetricNameLabel)), clip(lb.Name), len(lb.Name))}
		case l.LabelValueLengthLimit > 0 && len(lb.Value) > l.LabelValueLengthLimit:
			err = &LimitError{Limit: LimitValueLength, Value: l.LabelValueLengthLimit,
				Detail: fmt.Sprintf("metric %q, label %q: value %q is %d bytes long", clip(ls.Get(commonmodel.MetricNameLabel)), clip(lb.Name), clip(lb.Value), len(lb.Value))}
		}
	})
	return err
}

// maxLine is the longest line a payload may have under the label limits
// (0: unbounded), so that a streamed scrape fails on a 10 MB line before
// it buffers it: labels at most LabelLimit, each a name and a value with
// every byte escaped (two bytes), quotes, '=' and ',', plus the value and
// timestamp. It needs all three label limits; the body size limit bounds
// a line otherwise.
func (l *Limits) maxLine() int {
	if l.LabelLimit <= 0 || l.LabelNameLengthLimit <= 0 || l.LabelValueLengthLimit <= 0 {
		return 0
	}
	return l.LabelLimit*(2*l.LabelNameLengthLimit+2*l.LabelValueLengthLimit+6) + 128
}

// Timestamp bound reasons: the reason label of
// kubelet_meta_proxy_target_samples_out_of_bounds_total.
const (
	BoundFuture = "too_far_in_future"
	BoundPast   = "too_old"
)

// OutOfBounds counts the samples of one scrape dropped for their timestamp.
type OutOfBounds struct {
	Future, Past int
	// First is the first such series as written and its timestamp, for the log.
	First  string
	FirstT int64
}

// SetLimits sets the limits this target's scrapes are held to.
func (c *TargetCache) SetLimits(l Limits) {
	c.limits = l
	c.futureMs, c.pastMs = l.OutOfBoundsFuture.Milliseconds(), l.OutOfBoundsPast.Milliseconds()
}

// outOfBounds reports whether a target timestamp t is outside the bounds
// around the scrape time, and counts it.
func (c *TargetCache) outOfBounds(res *Result, raw []byte, t, nowMs int64) bool {
	switch {
	case c.futureMs > 0 && t > nowMs+c.futureMs:
		res.OutOfBounds.Future++
	case c.pastMs > 0 && t < nowMs-c.pastMs:
		res.OutOfBounds.Past++
	default:
		return false
	}
	if res.OutOfBounds.First == "" {
		res.OutOfBounds.First, res.OutOfBounds.FirstT = clip(string(raw)), t
	}
	return true
}

func isLimit(err error) bool {
	var le *LimitError
	return errors.As(err, &le)
}

// lineTooLong is a streamed line longer than maxLine.
func (l *Limits) lineTooLong() error {
	return &LimitError{Limit: LimitValueLength, Value: l.LabelValueLengthLimit,
		Detail: fmt.Sprintf("a line is longer than %d bytes, more than any series within label_limit=%d and label_name_length_limit=%d can take", l.maxLine(), l.LabelLimit, l.LabelNameLengthLimit)}
}

// boundsMetrics count what the limits and bounds dropped.
type boundsMetrics struct {
	outOfBounds *prometheus.CounterVec
}

func newBoundsMetrics(reg prometheus.Registerer) *boundsMetrics {
	m := &boundsMetrics{
		outOfBounds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubelet_meta_proxy_target_samples_out_of_bounds_total",
			Help: "Samples dropped because their timestamp was outside --out-of-bounds-future/--out-of-bounds-past of the scrape time, by target and reason."},
			[]string{"target", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.outOfBounds)
	}
	return m
}

func (m *boundsMetrics) observe(key string, res *Result) {
	if n := res.OutOfBounds.Future; n > 0 {
		m.outOfBounds.WithLabelValues(key, BoundFuture).Add(float64(n))
	}
	if n := res.OutOfBounds.Past; n > 0 {
		m.outOfBounds.WithLabelValues(key, BoundPast).Add(float64(n))
	}
}

func (m *boundsMetrics) forget(key string) {
	m.outOfBounds.DeletePartialMatch(prometheus.Labels{"target": key})
}

// boundsLogEvery is how often at most a target's out-of-bounds samples are
// logged: a skewed clock stays skewed, and would log every scrape.
const boundsLogEvery = time.Minute

// logBounds logs, at most every boundsLogEvery per target, the samples a
// scrape dropped for their timestamps.
func (c *TargetCache) logBounds(log *slog.Logger, res *Result, now time.Time) {
	ob := res.OutOfBounds
	if ob.Future+ob.Past == 0 || now.Sub(c.lastBoundsLog) < boundsLogEvery {
		return
	}
	c.lastBoundsLog = now
	log.Warn("samples dropped: their timestamps are outside the bounds around the scrape time (is the target's clock wrong?)",
		"too_far_in_future", ob.Future, "too_old", ob.Past, "out_of_bounds_future", c.limits.OutOfBoundsFuture,
		"out_of_bounds_past", c.limits.OutOfBoundsPast, "first_series", ob.First, "first_timestamp", time.UnixMilli(ob.FirstT).UTC())
}

// dropCreated frees, after a failed scrape, the cache entries the scrape
// created: nothing of them was sent, so nothing needs a stale marker or a
// tombstone. Without this a target that fails with new series every scrape
// (a churner over --sample-limit) would hold evictAfter scrapes' worth of
// entries; with it, at most one scrape's, which the sample limit bounds.
func (c *TargetCache) dropCreated() {
	freed := 0
	for _, i := range c.created {
		e := c.entries.at(i)
		if !e.live() || e.lastT != noTimestamp {
			continue // came back with a tombstone: keep what it knows
		}
		c.index.remove(e.key, i)
		delete(c.selfClash, i)
		c.scopes.release(e.ns)
		*e = seriesEntry{}
		c.free = append(c.free, i)
		freed++
	}
	// Their labels too, at once: the interner's own trigger compares with
	// its size at the first eviction round, which a churner has inflated.
	if freed >= compactAfterFreed {
		c.compactLabels()
	}
}

// compactAfterFreed is how many entries a failed scrape must have freed for
// their labels to be compacted away at once: a few new series of a failing
// target wait for the next eviction round.
const compactAfterFreed = 1024

// churned reports whether an eviction round that freed freed entries
// left much of the label table garbage: a target that replaces its series
// every scrape would otherwise grow the interner past its own trigger,
// whose baseline is the (already inflated) size at the first round.
func (c *TargetCache) churned(freed int) bool {
	return freed >= compactAfterFreed && freed >= c.Len()/2
}

// capTombstones bounds the tombstones of a target that churns: with a
// sample limit, at tombstonesPerSample times it (a target replacing all
// its series every scrape would otherwise leave tombstoneTTL/interval
// scrapes' worth). The ones dropped are the oldest of arbitrary pods; such a series coming
// back with an old timestamp of its own is the rare case they guard.
func (c *TargetCache) capTombstones() {
	limit := c.limits.SampleLimit * tombstonesPerSample
	if limit <= 0 {
		return
	}
	c.tombs.capAt(limit)
}

const tombstonesPerSample = 2

// overgrown reports whether the cache holds more than twice the sample
// limit: a target that replaces its series every scrape then has those
// absent for evictAfter scrapes evicted every scrape, not every
// evictAfter-th, which bounds it to about (evictAfter+2) × the limit.
func (c *TargetCache) overgrown() bool {
	return c.limits.SampleLimit > 0 && c.Len() > 2*c.limits.SampleLimit
}
