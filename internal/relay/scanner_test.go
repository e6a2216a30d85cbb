package relay

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
)

// bareTarget adds no labels, so what the cache builds is exactly what the
// payload says (minus empty values, which Build drops).
func bareTarget() *scrape.Target { return &scrape.Target{Key: "target/fuzz", Address: "fuzz:80"} }

type refSample struct {
	labels string
	v      uint64
	ts     int64
	hasTS  bool
}

// refParse runs the reference parser over body and returns its samples, one
// per distinct raw series (the cache keeps the first of duplicate lines).
func refParse(body []byte) ([]refSample, int, error) {
	p := textparse.NewPromParser(body, labels.NewSymbolTable(), false)
	var out []refSample
	seen := map[string]bool{}
	n := 0
	for {
		et, err := p.Next()
		if errors.Is(err, io.EOF) {
			return out, n, nil
		}
		if err != nil {
			return nil, 0, err
		}
		if et != textparse.EntrySeries {
			continue
		}
		n++
		raw, tp, v := p.Series()
		if seen[string(raw)] {
			continue
		}
		seen[string(raw)] = true
		var ls labels.Labels
		p.Labels(&ls)
		b := labels.NewBuilder(ls)
		ls.Range(func(l labels.Label) {
			if l.Value == "" {
				b.Del(l.Name)
			}
		})
		s := refSample{labels: b.Labels().String(), v: math.Float64bits(v)}
		if tp != nil {
			s.ts, s.hasTS = *tp, true
		}
		out = append(out, s)
	}
}

func seriesString(t *model.LabelTable, ref model.SeriesRef) string {
	var kv []string
	it := t.Labels(ref)
	for it.Next() {
		kv = append(kv, string(it.Name), string(it.Value))
	}
	return labels.FromStrings(kv...).String()
}

// checkAgainstReference is the fuzz property: the hand-written scanner never
// panics, and whatever it accepts the reference parser accepts, with the
// same samples.
func checkAgainstReference(t *testing.T, body []byte) {
	t.Helper()
	show := body
	if len(show) > 400 {
		show = show[:400]
	}
	in := append([]byte(nil), body...)
	c := NewTargetCache(bareTarget(), true)
	res := c.Process(in, "text/plain; version=0.0.4", scrapeTime, time.Second, nil, nil)
	if res.Err != nil {
		var pe *ParseError
		if !errors.As(res.Err, &pe) {
			t.Fatalf("error is not a ParseError: %v", res.Err)
		}
		if pe.Line < 1 || pe.Line > bytes.Count(body, []byte{'\n'})+1 {
			t.Fatalf("ParseError.Line %d outside the payload's %d lines", pe.Line, bytes.Count(body, []byte{'\n'})+1)
		}
		return
	}
	ref := append([]byte(nil), body...)
	if len(ref) > 0 && ref[len(ref)-1] != '\n' {
		ref = append(ref, '\n')
	}
	want, n, err := refParse(ref)
	if err != nil {
		t.Fatalf("scanner accepted what the reference parser rejects (%v):\n%q", err, show)
	}
	if res.Scraped != n {
		t.Fatalf("scanner counted %d samples, reference %d:\n%q", res.Scraped, n, show)
	}
	got := res.View.Samples[:len(res.View.Samples)-res.ownShown]
	if len(got) != len(want) {
		t.Fatalf("scanner gave %d samples, reference %d:\n%q", len(got), len(want), show)
	}
	for i, s := range got {
		w := want[i]
		st := res.View.T(i)
		g := refSample{labels: seriesString(res.View.Table, res.View.Ref(i)), v: math.Float64bits(s.V()), ts: st, hasTS: st != view.NoTimestamp}
		if st == view.NoTimestamp {
			g.ts = 0
		}
		if g != w {
			t.Fatalf("sample %d: scanner %+v, reference %+v:\n%q", i, g, w, show)
		}
	}
}

// fuzzSeeds are lines of the real captures (every HELP/TYPE/sample shape
// they have) and hand-made tricky cases.
func fuzzSeeds(tb testing.TB) []string {
	seeds := []string{
		"",
		"\n",
		"up 1\n",
		"up 1",
		"up 1 \n",
		"up 1 1700000000000   \n",
		"up 1\r\n",
		"up 1 1700000000000\r\n",
		"up{a=\"1\"} 1\r\nup{a=\"2\"} 2\r\n",
		"m{a=\"say \\\"hi\\\"\"} 1\n",
		"m{a=\"}\"} 1\n",
		"m{a=\"x}\",b=\"{y\"} 1\n",
		"m{a=\"\\\\\"} 1\n",
		"m{a=\"\\\\\\\"}\"} 1\n",
		"m{a=\"\\n\"} 1\n",
		"m{a=\"\"} 1\n",
		"m{} 1\n",
		"m{a=\"1\",} 1\n",
		"m NaN\nn +Inf\no -Inf\n",
		"m 1 -1\n",
		"m 1 -9223372036854775808\n",
		"m 1 9223372036854775807\n",
		"m 1 +5\n",
		"m +1\n",
		"m .5\n",
		"m 1e10\n",
		"m 0x10\n",
		"m 1_0\n",
		"m Inf\n",
		"m nan\n",
		"m\t1\t2\n",
		"  m 1\n",
		"# HELP m help with \\\\ and \\n escapes\n# TYPE m counter\nm 1\n",
		"# HELP m\n# TYPE m gauge\nm 1\n",
		"# TYPE m unknown\nm 1\n",
		"# TYPE m untyped\nm 1\n",
		"# TYPE m counter extra\nm 1\n",
		"# TYPE m\nm 1\n",
		"# plain comment\nm 1\n",
		"#\nm 1\n",
		"# HELP 9m x\n",
		"m 1\nm 1\n",
		"m{a=\"1\"} 1\nm{a=\"1\"} 2\n",
		"m {a=\"1\"} 1\n",
		"m{a=\"1\"}1\n",
		"m{a=\"1\" } 1\n",
		"m{ a=\"1\"} 1\n",
		"m{a=\"1\"} 1 2 3\n",
		"m{a=\"unterminated} 1\n",
		"m{a=\"1\" 1\n",
		"{a=\"1\"} 1\n",
		"m{__name__=\"x\"} 1\n",
		"m{a=\"1\",a=\"2\"} 1\n",
		"m{namespace=\"web\",pod=\"p\"} 1 1700000000000\n",
		"m{a=\"é☃\"} 1\n",
		"m:sub_total 1\n",
	}
	for _, name := range captures {
		sc := bufio.NewScanner(bytes.NewReader(readCapture(tb, name)))
		sc.Buffer(nil, 1<<20)
		kinds := map[string]bool{}
		for sc.Scan() {
			line := sc.Text()
			// One line of each shape: HELP, TYPE, and samples by metric name.
			key := line
			if i := strings.IndexAny(line, "{ "); i > 0 && !strings.HasPrefix(line, "#") {
				key = line[:i]
			} else if strings.HasPrefix(line, "# ") && len(line) > 6 {
				key = line[:6]
			}
			if !kinds[key] {
				kinds[key] = true
				seeds = append(seeds, line+"\n")
			}
		}
	}
	return seeds
}

// TestScannerMatchesReferenceOnCaptures runs the fuzz property over every
// real capture and every seed, so it is checked on every go test.
func TestScannerMatchesReferenceOnCaptures(t *testing.T) {
	for _, name := range captures {
		t.Run(name, func(t *testing.T) { checkAgainstReference(t, readCapture(t, name)) })
	}
	for _, s := range fuzzSeeds(t) {
		checkAgainstReference(t, []byte(s))
	}
}

func TestScannerAcceptsTrickyLines(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		labels     string
		v          float64
		ts         int64
		hasTS      bool
	}{
		{"escaped quotes", `m{a="say \"hi\""} 1` + "\n", `{__name__="m", a="say \"hi\""}`, 1, 0, false},
		{"brace in value", `m{a="}"} 2` + "\n", `{__name__="m", a="}"}`, 2, 0, false},
		{"backslash before quote", `m{a="\\"} 3` + "\n", `{__name__="m", a="\\"}`, 3, 0, false},
		{"escaped backslash then escaped quote", `m{a="\\\"}"} 4` + "\n", `{__name__="m", a="\\\"}"}`, 4, 0, false},
		{"trailing spaces", "m 6 1000   \n", `{__name__="m"}`, 6, 1000, true},
		{"no final newline", "m 8", `{__name__="m"}`, 8, 0, false},
		{"+Inf", "m +Inf\n", `{__name__="m"}`, math.Inf(1), 0, false},
		{"-Inf", "m -Inf\n", `{__name__="m"}`, math.Inf(-1), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewTargetCache(bareTarget(), true)
			res := c.Process([]byte(tc.body), "", scrapeTime, time.Second, nil, nil)
			if res.Err != nil {
				t.Fatalf("rejected %q: %v", tc.body, res.Err)
			}
			s := res.View.Samples[0]
			if got := seriesString(res.View.Table, res.View.Ref(0)); got != tc.labels {
				t.Errorf("labels %s, want %s", got, tc.labels)
			}
			st := res.View.T(0)
			if hasT := st != view.NoTimestamp; s.V() != tc.v || hasT != tc.hasTS || (tc.hasTS && st != tc.ts) {
				t.Errorf("got %v @%d (%v), want %v @%d (%v)", s.V(), st, hasT, tc.v, tc.ts, tc.hasTS)
			}
			checkAgainstReference(t, []byte(tc.body))
		})
	}
	c := NewTargetCache(bareTarget(), true)
	res := c.Process([]byte("m NaN\n"), "", scrapeTime, time.Second, nil, nil)
	if res.Err != nil || !math.IsNaN(res.View.Samples[0].V()) {
		t.Fatalf("NaN: %v %v", res.Err, res.View.Samples[0].V())
	}
}

// TestScannerRejectsWhatTheReferenceRejects covers lines of a series the
// cache knows already: only new series go through the reference parser, so
// the hand-written scanner must itself refuse what the reference refuses, or
// a payload would pass or fail depending on what was scraped before.
func TestScannerRejectsWhatTheReferenceRejects(t *testing.T) {
	for _, tc := range []struct{ name, line string }{
		{"negative timestamp", "m{a=\"1\"} 5 -1000"},
		{"signed timestamp", "m{a=\"1\"} 5 +1000"},
		{"CRLF after the timestamp", "m{a=\"1\"} 7 1000\r"},
		{"CRLF after the value", "m{a=\"1\"} 7\r"},
		{"hex float", "m{a=\"1\"} -0x1p4"},
		{"underscore", "m{a=\"1\"} 1_000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewTargetCache(bareTarget(), true)
			if res := c.Process([]byte("m{a=\"1\"} 1 1\n"), "", scrapeTime, time.Second, nil, nil); res.Err != nil {
				t.Fatal(res.Err)
			}
			res := c.Process([]byte("m{a=\"1\"} 1 2\n"+tc.line+"\n"), "", scrapeTime, time.Second, nil, nil)
			var pe *ParseError
			if !errors.As(res.Err, &pe) || pe.Line != 2 {
				t.Fatalf("known series, %q: got %v, want a ParseError on line 2", tc.line, res.Err)
			}
			if _, _, err := refParse([]byte(tc.line + "\n")); err == nil {
				t.Fatalf("the reference parser accepts %q", tc.line)
			}
			c = NewTargetCache(bareTarget(), true)
			if res := c.Process([]byte(tc.line+"\n"), "", scrapeTime, time.Second, nil, nil); res.Err == nil {
				t.Fatalf("new series, %q: accepted", tc.line)
			}
		})
	}
}

func TestParseErrorLine(t *testing.T) {
	good := "# HELP m A metric.\n# TYPE m gauge\nm{a=\"1\"} 1\n\nm{a=\"2\"} 2\n"
	for _, tc := range []struct {
		name, body string
		line       int
		contains   string
	}{
		{"unclosed label set", "m{a=\"1\" 1\n", 1, "line 1"},
		{"unterminated quote", good + "m{a=\"2} 2\n", 6, "line 6"},
		{"no value", good + "m{a=\"3\"}\n", 6, "line 6"},
		{"bad value", "m 1\nm{a=\"3\"} one\n", 2, "line 2"},
		{"hex value", "m 1\n\n\nm{a=\"3\"} 0x1F\n", 4, "line 4"},
		{"bad timestamp", good + "m{a=\"3\"} 1 soon\n", 6, "line 6"},
		{"float timestamp", "m 1 1.5\n", 1, "line 1"},
		{"text after timestamp", good + "m{a=\"3\"} 1 2 3\n", 6, "line 6"},
		{"bad TYPE", good + "# TYPE n histogramm\n", 6, "line 6"},
		{"TYPE without name", "m 1\n# TYPE \n", 2, "line 2"},
		{"invalid name in HELP", "m 1\n# HELP 9m x\n", 2, "line 2"},
		{"no metric name", good + "{a=\"1\"} 1\n", 6, "line 6"},
		{"bad label name (reference parser)", good + "m{a-b=\"1\"} 1\n", 6, "line 6"},
		{"last line without newline", good + "m{a=\"3\"", 6, "line 6"},
		{"duplicate label name", "m 1\nm{a=\"1\",a=\"2\"} 7\n", 2, `label name "a" is not unique`},
		{"empty metric name", "m 1\n{\"\"} 7\n", 2, "missing metric name"},
		{"label name not UTF-8", "m 1\nm{\"\xff\"=\"1\"} 7\n", 2, "invalid metric name or label names"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewTargetCache(bareTarget(), true)
			res := c.Process([]byte(tc.body), "", scrapeTime, time.Second, nil, nil)
			var pe *ParseError
			if !errors.As(res.Err, &pe) {
				t.Fatalf("want a ParseError, got %v", res.Err)
			}
			if pe.Line != tc.line || !strings.Contains(res.Err.Error(), tc.contains) {
				t.Fatalf("error %q names line %d, want %d", res.Err, pe.Line, tc.line)
			}
			if ErrorReason(res.Err) != "parse" {
				t.Fatalf("reason %q", ErrorReason(res.Err))
			}
		})
	}
}

func TestParseErrorLineOpenMetrics(t *testing.T) {
	body := "# TYPE m gauge\nm 1\nm{a=\"x\" 2\n# EOF\n"
	c := NewTargetCache(bareTarget(), true)
	res := c.Process([]byte(body), "application/openmetrics-text; version=1.0.0", scrapeTime, time.Second, nil, nil)
	var pe *ParseError
	if !errors.As(res.Err, &pe) || pe.Line != 3 {
		t.Fatalf("got %v, want a ParseError on line 3", res.Err)
	}
}

func TestUnsupportedContentType(t *testing.T) {
	c := NewTargetCache(bareTarget(), true)
	res := c.Process([]byte("m 1\n"), "application/json", scrapeTime, time.Second, nil, nil)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "application/json") {
		t.Fatalf("got %v", res.Err)
	}
	if res.View.Samples[0].V() != 0 {
		t.Fatal("up must be 0")
	}
}

var _ = enrich.Label{}
