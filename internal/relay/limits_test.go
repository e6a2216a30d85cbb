package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/value"
)

// sendOf returns the series of res.Send as strings, stale markers marked.
func sendOf(res *Result) []string {
	var out []string
	for _, s := range res.Send {
		str := seriesString(s.Table, s.Ref)
		if value.IsStaleNaN(s.V) {
			str = "STALE " + str
		}
		out = append(out, str)
	}
	return out
}

func countStale(res *Result) int {
	n := 0
	for _, s := range res.Send {
		if value.IsStaleNaN(s.V) {
			n++
		}
	}
	return n
}

func TestLimitsFailTheScrapeAsPrometheus(t *testing.T) {
	good := "a 1\nb{x=\"y\"} 2\n"
	long := strings.Repeat("v", 300)
	for _, tc := range []struct {
		name    string
		limits  Limits
		payload string
		reason  string // "" : the scrape passes
		scraped int    // scrape_samples_scraped reported
	}{
		{"under the sample limit", Limits{SampleLimit: 3}, "a 1\nb 2\nc 3\n", "", 3},
		{"over the sample limit", Limits{SampleLimit: 2}, "a 1\nb 2\nc 3\nd 4\n", LimitSample, 4},
		{"duplicates count to the limit", Limits{SampleLimit: 2}, "a 1\na 1\na 1\n", LimitSample, 3},
		// 4 target labels + __name__ + x.
		{"at the label limit", Limits{LabelLimit: 6}, "m{x=\"1\"} 1\n", "", 1},
		{"over the label limit", Limits{LabelLimit: 6}, "m{x=\"1\",y=\"2\"} 1\n", LimitLabel, 1},
		{"label name too long", Limits{LabelNameLengthLimit: 8}, "m{abcdefghi=\"1\"} 1\n", LimitNameLength, 1},
		{"__name__ is at the name length limit", Limits{LabelNameLengthLimit: 8}, "m{abcdefgh=\"1\"} 1\n", "", 1},
		{"metric name counts as a value", Limits{LabelValueLengthLimit: 5}, "metric_x 1\n", LimitValueLength, 1},
		{"label value too long", Limits{LabelValueLengthLimit: 100}, "m{x=\"" + long + "\"} 1\n", LimitValueLength, 1},
		{"value at the length limit", Limits{LabelValueLengthLimit: 300}, "m{x=\"" + long + "\"} 1\n", "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, stream := range []bool{false, true} {
				c := NewTargetCache(testTarget(), true)
				c.SetLimits(tc.limits)
				now := scrapeTime
				first := c.Process([]byte(good), "", now, time.Second, nil, nil)
				if first.Err != nil {
					t.Fatal(first.Err)
				}
				now = now.Add(30 * time.Second)
				var res *Result
				if stream {
					res = processStream(c, []byte(tc.payload), now, 4)
				} else {
					res = c.Process([]byte(tc.payload), "", now, time.Second, nil, nil)
				}
				if got := ErrorReason(res.Err); (tc.reason == "" && res.Err != nil) || (tc.reason != "" && got != tc.reason) {
					t.Fatalf("stream=%v: err %v (reason %s), want reason %q", stream, res.Err, got, tc.reason)
				}
				if res.Scraped != tc.scraped {
					t.Errorf("stream=%v: Scraped %d, want %d", stream, res.Scraped, tc.scraped)
				}
				if tc.reason == "" {
					continue
				}
				var le *LimitError
				if !errors.As(res.Err, &le) || !strings.Contains(res.Err.Error(), tc.reason+" exceeded") {
					t.Errorf("error %q does not name the limit", res.Err)
				}
				if len(res.Err.Error()) > 400 {
					t.Errorf("error is %d bytes long: it must not quote the whole value", len(res.Err.Error()))
				}
				// Nothing of the payload is sent; the previous scrape's
				// series end (Prometheus appends an empty scrape after a
				// failed append, which marks them stale), up is 0.
				if n := countStale(res); n != 2 {
					t.Errorf("%d stale markers, want the 2 previous series: %v", n, sendOf(res))
				}
				if len(res.Send) != 2+numSelfFamilies {
					t.Errorf("sent %v, want only stale markers and the scrape's own series", sendOf(res))
				}
				if up := res.View.Samples[len(res.View.Samples)-numSelfFamilies].V(); up != 0 {
					t.Errorf("up = %v, want 0", up)
				}
				if n := len(res.View.Samples); n != numSelfFamilies {
					t.Errorf("view has %d samples, want only the scrape's own", n)
				}
			}
		})
	}
}

// Over the sample limit, no cache entry is built for the excess: a target
// that makes new series every scrape costs at most the limit, once.
func TestSampleLimitBoundsTheCache(t *testing.T) {
	c := NewTargetCache(testTarget(), true)
	c.SetLimits(Limits{SampleLimit: 100})
	now := scrapeTime
	for i := range 5 {
		var b strings.Builder
		for j := range 10000 {
			fmt.Fprintf(&b, "churn{i=\"%d\",j=\"%d\"} 1\n", i, j)
		}
		res := c.Process([]byte(b.String()), "", now, time.Second, nil, nil)
		if ErrorReason(res.Err) != LimitSample || res.Scraped != 10000 {
			t.Fatalf("scrape %d: err %v, scraped %d", i, res.Err, res.Scraped)
		}
		now = now.Add(time.Second)
	}
	// The failed scrapes sent nothing: their entries are freed at once,
	// and the slots reused, so the cache never grows past one scrape's.
	if n, slots := c.Len(), c.entries.len(); n != 0 || slots > 100 {
		t.Fatalf("cache holds %d series in %d slots after 5 failed scrapes over a limit of 100", n, slots)
	}
}

// A line longer than any series within the label limits fails the
// streamed scrape before it is buffered whole.
func TestStreamLineBoundedByLabelLimits(t *testing.T) {
	c := NewTargetCache(testTarget(), true)
	l := Limits{LabelLimit: 10, LabelNameLengthLimit: 20, LabelValueLengthLimit: 100}
	c.SetLimits(l)
	body := "m{x=\"" + strings.Repeat("v", 1<<20) + "\"} 1\n"
	res, buf := c.ProcessStream(strings.NewReader(body), scrapeTime, nil, nil)
	if ErrorReason(res.Err) != LimitValueLength {
		t.Fatalf("err %v, want %s", res.Err, LimitValueLength)
	}
	if cap(buf) > 2*streamChunk+2*l.maxLine() {
		t.Fatalf("buffer grew to %d bytes for a line limit of %d", cap(buf), l.maxLine())
	}
	// The longest line the limits allow still parses.
	var b strings.Builder
	b.WriteString(strings.Repeat("n", 100) + "{")
	for i := range 5 {
		fmt.Fprintf(&b, "%s%02d=\"%s\",", strings.Repeat("l", 18), i, strings.Repeat("\\\\", 50))
	}
	b.WriteString("} 1 1700000000000\n")
	c2 := NewTargetCache(testTarget(), true)
	c2.SetLimits(l)
	if res, _ := c2.ProcessStream(strings.NewReader(b.String()), scrapeTime, nil, nil); res.Err != nil {
		t.Fatalf("a line within the limits failed: %v", res.Err)
	}
}

func TestOutOfBoundsSamplesDroppedOneByOne(t *testing.T) {
	now := scrapeTime
	ms := now.UnixMilli()
	future := ms + (11 * time.Minute).Milliseconds()
	past := ms - (2 * time.Hour).Milliseconds()
	payload := fmt.Sprintf("ok 1 %d\nfuture 2 %d\npast 3 %d\nnear 4 %d\nnots 5\n", ms-1000, future, past, ms+60000)
	c := NewTargetCache(testTarget(), true)
	c.SetLimits(Limits{OutOfBoundsFuture: 10 * time.Minute, OutOfBoundsPast: time.Hour})
	res := c.Process([]byte(payload), "", now, time.Second, nil, nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if res.OutOfBounds.Future != 1 || res.OutOfBounds.Past != 1 {
		t.Fatalf("out of bounds %+v, want 1 future and 1 past", res.OutOfBounds)
	}
	if !strings.HasPrefix(res.OutOfBounds.First, "future") || res.OutOfBounds.FirstT != future {
		t.Errorf("first out-of-bounds sample %q at %d, want future at %d", res.OutOfBounds.First, res.OutOfBounds.FirstT, future)
	}
	var names []string
	for _, s := range res.Send {
		it := s.Table.Labels(s.Ref)
		for it.Next() {
			if string(it.Name) == "__name__" {
				names = append(names, string(it.Value))
			}
		}
	}
	want := "ok,near,nots,up,scrape_duration_seconds,scrape_samples_scraped,scrape_samples_post_metric_relabeling,scrape_series_added"
	if got := strings.Join(names, ","); got != want {
		t.Fatalf("sent %s, want %s", got, want)
	}
	for i, s := range res.View.Samples {
		if st := res.View.T(i); st == future || st == past {
			t.Fatalf("/metrics shows an out-of-bounds sample: %v @%d", s.V(), st)
		}
	}
	for _, s := range res.Send {
		if !math.IsNaN(s.V) && (s.T > ms+(10*time.Minute).Milliseconds() || s.T < ms-time.Hour.Milliseconds()) {
			t.Fatalf("sent a sample at %d, outside the bounds around %d", s.T, ms)
		}
	}
	// Without honor_timestamps the scrape time is used: nothing is out of bounds.
	c = NewTargetCache(testTarget(), false)
	c.SetLimits(Limits{OutOfBoundsFuture: 10 * time.Minute, OutOfBoundsPast: time.Hour})
	if res := c.Process([]byte(payload), "", now, time.Second, nil, nil); res.OutOfBounds.Future+res.OutOfBounds.Past != 0 {
		t.Fatalf("honor_timestamps off: %+v dropped", res.OutOfBounds)
	}
}

func TestLimitsValidate(t *testing.T) {
	if err := (Limits{SampleLimit: -1, OutOfBoundsPast: -time.Second}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "sample limit -1") || !strings.Contains(err.Error(), "timestamp bounds") {
		t.Fatalf("Validate: %v", err)
	}
	if err := (Limits{SampleLimit: 10, OutOfBoundsFuture: time.Minute}).Validate(); err != nil {
		t.Fatal(err)
	}
}

// A target that replaces all its series every scrape, under the sample
// limit, holds a bounded number of entries, tombstones and label bytes.
func TestChurnUnderTheLimitIsBounded(t *testing.T) {
	const limit = 2000
	c := NewTargetCache(testTarget(), true)
	c.SetLimits(Limits{SampleLimit: limit})
	now := scrapeTime
	maxSize := 0
	for round := range 40 {
		var b strings.Builder
		for i := range limit {
			fmt.Fprintf(&b, "churn{round=\"%d\",i=\"%d\"} 1\n", round, i)
		}
		if res := c.Process([]byte(b.String()), "", now, time.Second, nil, nil); res.Err != nil {
			t.Fatal(res.Err)
		}
		now = now.Add(2 * time.Second)
		if n := c.Len(); n > (evictAfter+2)*limit {
			t.Fatalf("round %d: %d series cached, bound %d", round, n, (evictAfter+2)*limit)
		}
		if n := c.tombs.len(); n > tombstonesPerSample*limit {
			t.Fatalf("round %d: %d tombstones, bound %d", round, n, tombstonesPerSample*limit)
		}
		if round == 20 {
			maxSize = 3 * c.labels.Size()
		}
		if maxSize > 0 && c.labels.Size() > maxSize {
			t.Fatalf("round %d: label table %d bytes, three times its size at round 20", round, c.labels.Size())
		}
	}
}

// logRecords counts the records a slog handler gets.
type logRecords struct{ n int }

func (l *logRecords) Enabled(context.Context, slog.Level) bool  { return true }
func (l *logRecords) Handle(context.Context, slog.Record) error { l.n++; return nil }
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler        { return l }
func (l *logRecords) WithGroup(string) slog.Handler             { return l }

// Out-of-bounds samples are logged at most once a minute per target.
func TestOutOfBoundsLogRateLimited(t *testing.T) {
	c := NewTargetCache(testTarget(), true)
	c.SetLimits(Limits{OutOfBoundsFuture: time.Minute})
	rec := &logRecords{}
	log := slog.New(rec)
	now := scrapeTime
	for i := range 10 {
		payload := fmt.Sprintf("m 1 %d\n", now.Add(time.Hour).UnixMilli())
		res := c.Process([]byte(payload), "", now, time.Second, nil, nil)
		c.logBounds(log, res, now)
		if res.OutOfBounds.Future != 1 {
			t.Fatalf("scrape %d: %+v", i, res.OutOfBounds)
		}
		now = now.Add(15 * time.Second)
	}
	// 10 scrapes over 150 s: at 0 s, 60 s, 120 s.
	if rec.n != 3 {
		t.Fatalf("logged %d times, want 3", rec.n)
	}
}
