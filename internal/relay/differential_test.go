package relay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model/modeltest"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"
)

// refScraper models what Prometheus's scrape loop (v0.316, scrape.go
// append) ingests from a text payload: model/textparse as Prometheus calls
// it for text/plain (NewPromParser, no type and unit labels); a parse error
// fails the whole scrape. A series is looked up by its raw bytes in a cache
// kept across scrapes; a new one gets labels.Builder's treatment (a name
// with an empty value anywhere is dropped), and must have a metric name,
// valid UTF-8 names and no name twice, or the scrape fails. The same raw
// series again in one payload is a duplicate: counted, dropped.
//
// Two departures, both the relay's: raw series are keyed without the
// line's leading blanks, and a duplicate with an explicit timestamp is
// dropped too (Prometheus hands it to the TSDB, which keeps it if later).
// With the first, the relay's cache forgetting the new series of a failed
// scrape (dropCreated) is visible: "m 0" in a failed scrape, then " m 0",
// is {__name__=" m"}, as Prometheus has it. The model forgets them too.
type refScraper struct {
	cache map[string]labels.Labels
	om    bool // OpenMetrics instead of the text format
}

type refResult struct {
	err        error
	samples    []refSample
	total      int
	duplicates int
}

func (r *refScraper) scrape(body []byte) refResult {
	if r.cache == nil {
		r.cache = map[string]labels.Labels{}
	}
	b := append([]byte(nil), body...)
	var p textparse.Parser
	if r.om {
		p = textparse.NewOpenMetricsParser(b, labels.NewSymbolTable())
	} else {
		p = textparse.NewPromParser(b, labels.NewSymbolTable(), false)
	}
	var res refResult
	seen := map[string]bool{}
	var added []string
	fail := func(err error) refResult {
		for _, k := range added {
			delete(r.cache, k)
		}
		return refResult{err: err}
	}
	for {
		et, err := p.Next()
		if errors.Is(err, io.EOF) {
			return res
		}
		if err != nil {
			return fail(err)
		}
		if et != textparse.EntrySeries {
			continue
		}
		res.total++
		raw, tp, v := p.Series()
		key := string(bytes.TrimLeft(raw, " \t"))
		if seen[key] {
			res.duplicates++
			continue
		}
		seen[key] = true
		ls, ok := r.cache[key]
		if !ok {
			var parsed labels.Labels
			p.Labels(&parsed)
			if ls, err = refCheck(parsed); err != nil {
				return fail(err)
			}
			r.cache[key] = ls
			added = append(added, key)
		}
		s := refSample{labels: ls.String(), v: math.Float64bits(v)}
		if tp != nil {
			s.ts, s.hasTS = *tp, true
		}
		res.samples = append(res.samples, s)
	}
}

// refCheck is the scrape loop's treatment of a new series' labels.
func refCheck(ls labels.Labels) (labels.Labels, error) {
	ls = labels.NewBuilder(ls).Labels() // Reset drops every name with an empty value
	if !ls.Has(model.MetricNameLabel) {
		return ls, errors.New("missing metric name")
	}
	if !ls.IsValid(model.UTF8Validation) {
		return ls, fmt.Errorf("invalid metric name or label names: %s", ls)
	}
	if n, dup := ls.HasDuplicateLabelNames(); dup {
		return ls, fmt.Errorf("label name %q is not unique", n)
	}
	return ls, nil
}

// relaySamples returns the payload samples of a scrape's view (its own
// series left out), as refSamples.
func relaySamples(res *Result) []refSample {
	var out []refSample
	for i, s := range res.View.Samples[:len(res.View.Samples)-res.ownShown] {
		g := refSample{labels: seriesString(res.View.Table, res.View.Ref(i)), v: math.Float64bits(s.V())}
		if st := res.View.T(i); st != view.NoTimestamp {
			g.ts, g.hasTS = st, true
		}
		out = append(out, g)
	}
	return out
}

func showPayload(b []byte) string {
	if len(b) > 400 {
		b = b[:400]
	}
	return fmt.Sprintf("%q", b)
}

// compareScrape checks one relay scrape against the reference: accepted by
// one if and only if by the other, with the same samples, count and
// duplicates.
func compareScrape(t *testing.T, what string, body []byte, res *Result, want refResult) {
	t.Helper()
	if (res.Err == nil) != (want.err == nil) {
		t.Fatalf("%s: relay error %v, reference error %v, payload %s", what, res.Err, want.err, showPayload(body))
	}
	if res.Err != nil {
		var pe *ParseError
		if !errors.As(res.Err, &pe) {
			t.Fatalf("%s: error is not a ParseError: %v", what, res.Err)
		}
		if n := bytes.Count(body, []byte{'\n'}) + 1; pe.Line < 1 || pe.Line > n {
			t.Fatalf("%s: ParseError.Line %d outside the payload's %d lines", what, pe.Line, n)
		}
		return
	}
	if res.Scraped != want.total || res.Duplicates != want.duplicates {
		t.Fatalf("%s: relay %d samples, %d duplicates; reference %d, %d; payload %s", what, res.Scraped, res.Duplicates, want.total, want.duplicates, showPayload(body))
	}
	got := relaySamples(res)
	if !slices.Equal(got, want.samples) {
		t.Fatalf("%s: samples differ\nrelay:     %+v\nreference: %+v\npayload %s", what, got, want.samples, showPayload(body))
	}
}

// processStream runs ProcessStream with the payload cut into chunks of
// chunk bytes, so that lines and quoted strings straddle chunks.
func processStream(c *TargetCache, body []byte, now time.Time, chunk int) *Result {
	old := streamChunk
	streamChunk = chunk
	defer func() { streamChunk = old }()
	res, _ := c.ProcessStream(&oneByteReader{b: body}, now, nil, nil)
	return res
}

// oneByteReader hands out its bytes a few at a time.
type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 3)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// checkDifferential is the fuzz property for one payload, both ways: the
// whole payload (Process, then again on a warm cache, then streamed in
// small chunks), and each of its lines alone.
func checkDifferential(t *testing.T, body []byte) {
	t.Helper()
	ref := &refScraper{}
	want := ref.scrape(body)
	c := NewTargetCache(bareTarget(), true)
	res := c.Process(append([]byte(nil), body...), "text/plain; version=0.0.4", scrapeTime, time.Second, nil, nil)
	compareScrape(t, "first scrape", body, res, want)
	if res.Err == nil {
		checkOutputs(t, body, res, scrapeTime)
	}
	// A warm cache: known series take the hand-written path.
	want = ref.scrape(body)
	res = c.Process(append([]byte(nil), body...), "text/plain", scrapeTime.Add(15*time.Second), time.Second, nil, nil)
	compareScrape(t, "second scrape", body, res, want)
	want = ref.scrape(body)
	res = processStream(c, body, scrapeTime.Add(30*time.Second), 5)
	compareScrape(t, "third scrape, streamed", body, res, want)
	res = processStream(NewTargetCache(bareTarget(), true), body, scrapeTime, 7)
	compareScrape(t, "streamed, cold", body, res, (&refScraper{}).scrape(body))

	lines := bytes.SplitAfter(body, []byte{'\n'})
	if len(lines) > 1 {
		for _, l := range lines[:min(len(lines), 32)] {
			c := NewTargetCache(bareTarget(), true)
			res := c.Process(append([]byte(nil), l...), "", scrapeTime, time.Second, nil, nil)
			compareScrape(t, "line alone", l, res, (&refScraper{}).scrape(l))
		}
	}
}

// checkOutputs is the property that the two outputs agree: the /metrics
// text of a scrape parses with the reference parser and gives exactly the
// series, values and timestamps sent to remote write, each of them valid
// for remote write.
func checkOutputs(t *testing.T, body []byte, res *Result, now time.Time) {
	t.Helper()
	var out bytes.Buffer
	if err := view.WriteText(&out, []*view.TargetView{res.View}, nil); err != nil {
		t.Fatal(err)
	}
	var sent []refSample
	for _, s := range res.Send {
		if err := modeltest.ValidateSeries(s.Table, s.Ref); err != nil {
			t.Fatalf("sent an invalid series %s: %v; payload %s", seriesString(s.Table, s.Ref), err, showPayload(body))
		}
		sent = append(sent, refSample{labels: seriesString(s.Table, s.Ref), v: math.Float64bits(s.V), ts: s.T, hasTS: true})
	}
	p := textparse.NewPromParser(out.Bytes(), labels.NewSymbolTable(), false)
	var shown []refSample
	for {
		et, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("/metrics does not parse: %v\n%s\npayload %s", err, out.Bytes(), showPayload(body))
		}
		if et != textparse.EntrySeries {
			continue
		}
		_, tp, v := p.Series()
		var ls labels.Labels
		p.Labels(&ls)
		s := refSample{labels: ls.String(), v: math.Float64bits(v), ts: now.UnixMilli(), hasTS: true}
		if tp != nil {
			s.ts = *tp
		}
		shown = append(shown, s)
	}
	key := func(a, b refSample) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) }
	slices.SortFunc(sent, key)
	slices.SortFunc(shown, key)
	if !slices.Equal(sent, shown) {
		t.Fatalf("/metrics and remote write disagree\n/metrics:     %+v\nremote write: %+v\n%s\npayload %s", shown, sent, out.Bytes(), showPayload(body))
	}
	// Escaped for a legacy reader, it parses too.
	for _, scheme := range []model.EscapingScheme{model.UnderscoreEscaping, model.DotsEscaping, model.ValueEncodingEscaping} {
		out.Reset()
		if err := view.WriteTextEscaped(&out, []*view.TargetView{res.View}, nil, scheme); err != nil {
			t.Fatal(err)
		}
		p := textparse.NewPromParser(out.Bytes(), labels.NewSymbolTable(), false)
		for {
			_, err := p.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("/metrics escaped with %s does not parse: %v\n%s", scheme, err, out.Bytes())
			}
		}
	}
}

// issueSeeds are the divergences issue 11 names and shapes the lexer
// treats in its own way.
var issueSeeds = []string{
	"#0\x00\nA 0",
	"A{d=\"0\"d=\"\"}0",
	"sp   {a=\"b\"} 1\n",
	"A+0 0\n",
	"A.5 1\n",
	"# a\x00b\nA 0\n",
	"A 0\n\x00\nB 1\n",
	"  \x00\nA 0\n",
	"m{a=\"x\ny\"} 1\nn 2\n",
	"m{a=\"x\"\x00\x00,b=\"y\"} 1\n",
	"m{a=\"x\\\x00\"}\"} 1\n",
	"# HELP m.y z\nm 1\n",
	"# TYPE m.counter\nm 1\n",
	"#HELP 9m x\n",
	"# HELP \"a\nb\" x\n{\"a\nb\"} 1\n",
	"# HELP m   \n",
	"m{a= \x00\"x\"} 1\n",
	"{\"quoted.name\"} 1\n",
	"{\"quoted.name\",\"dotted.label\"=\"x\"} 1\n",
	"m{\"dotted.label\"=\"x\"} 1\n",
	"m{a=\"1\",a=\"2\"} 1\n",
	"m{__name__=\"x\"} 1\n",
	"m 1\nm 2\n",
	"m{a=\"1\"} 1\nm{a=\"1\",} 2\n",
	"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n",
	"# TYPE s summary\ns{quantile=\"0.5\"} 1\n",
	"{\"\"} 1\n",
	"m{\"\xff\"=\"1\"} 1\n",
	"m{a=\"\"} 1\nm 2\n",
}

func FuzzTextScanner(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add([]byte(s))
	}
	for _, s := range issueSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDifferential(t, body)
	})
}

// FuzzScrapeSequence scrapes a, then b, with one cache: b's series that a
// had take the paths of known series (prediction, index), which must accept
// and read exactly what the reference does.
func FuzzScrapeSequence(f *testing.F) {
	seeds := append(fuzzSeeds(f), issueSeeds...)
	for i, s := range seeds {
		f.Add([]byte(s), []byte(seeds[(i+1)%len(seeds)]))
		f.Add([]byte(s), []byte(s))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		ref := &refScraper{}
		c := NewTargetCache(bareTarget(), true)
		compareScrape(t, "first payload", a, c.Process(append([]byte(nil), a...), "", scrapeTime, time.Second, nil, nil), ref.scrape(a))
		want := ref.scrape(b)
		compareScrape(t, "second payload", b, processStream(c, b, scrapeTime.Add(15*time.Second), 4), want)
		want = ref.scrape(b)
		compareScrape(t, "second payload again", b, c.Process(append([]byte(nil), b...), "", scrapeTime.Add(30*time.Second), time.Second, nil, nil), want)
	})
}

// TestDifferentialSeeds runs the fuzz properties over every seed and every
// real capture on every go test.
func TestDifferentialSeeds(t *testing.T) {
	for _, name := range captures {
		t.Run(name, func(t *testing.T) { checkDifferential(t, readCapture(t, name)) })
	}
	for _, s := range append(fuzzSeeds(t), issueSeeds...) {
		checkDifferential(t, []byte(s))
	}
}
