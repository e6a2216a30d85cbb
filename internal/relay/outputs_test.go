package relay

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// genPayload writes a random text-format payload with the shapes that
// break outputs: quoted UTF-8 metric and label names, escapes in names and
// values, empty values, duplicate series, le/quantile labels under TYPE,
// special values and timestamps.
func genPayload(r *rand.Rand) string {
	names := []string{"up", "m_total", "h", "s", `"quoted.name"`, `"a\"b\\c\nd"`, `"ünï"`, "node:cpu:rate", `"x y"`}
	lnames := []string{"a", "le", "quantile", "namespace", "pod", `"dotted.label"`, `"quo\"te"`, `"new\nline"`, `"ü"`, "instance", "job"}
	values := []string{"1", "0", "-0", "1e+06", "NaN", "+Inf", "-Inf", ".5", "-12.25", "1.7976931348623157e308"}
	lvals := []string{"", "x", `say \"hi\"`, `back\\slash`, `new\nline`, "é☃", "1", "0.5", "+Inf", "web"}
	var b strings.Builder
	for range 1 + r.IntN(12) {
		name := names[r.IntN(len(names))]
		if r.IntN(4) == 0 {
			fmt.Fprintf(&b, "# TYPE %s %s\n", name, []string{"counter", "gauge", "histogram", "summary", "untyped"}[r.IntN(5)])
		}
		if r.IntN(5) == 0 {
			fmt.Fprintf(&b, "# HELP %s help with \\\\ and \\n and ü\n", name)
		}
		var ls []string
		quotedName := strings.HasPrefix(name, `"`)
		if quotedName {
			ls = append(ls, name)
		}
		for range r.IntN(4) {
			ls = append(ls, fmt.Sprintf(`%s="%s"`, lnames[r.IntN(len(lnames))], lvals[r.IntN(len(lvals))]))
		}
		series := name
		if quotedName || len(ls) > 0 {
			if quotedName {
				series = "{" + strings.Join(ls, ",") + "}"
			} else {
				series = name + "{" + strings.Join(ls, ",") + "}"
			}
		}
		line := series + " " + values[r.IntN(len(values))]
		if r.IntN(3) == 0 {
			line += fmt.Sprintf(" %d", 1700000000000+r.Int64N(1000000))
		}
		b.WriteString(line + "\n")
		if r.IntN(8) == 0 {
			b.WriteString(line + "\n") // the same series twice
		}
	}
	return b.String()
}

// TestOutputsAgreeGenerated is the outputs property on generated payloads,
// with a target that adds labels and a namespace index that enriches: what
// the relay accepts it sends as valid series, and /metrics, read back by
// the reference parser, shows exactly those series and values. Payloads
// the relay refuses must be refused by the reference too.
func TestOutputsAgreeGenerated(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 2026))
	accepted := 0
	for i := range 2000 {
		body := genPayload(r)
		want := (&refScraper{}).scrape([]byte(body))
		c := NewTargetCache(bareTarget(), true)
		res := c.Process([]byte(body), "text/plain", scrapeTime, time.Second, nil, nil)
		compareScrape(t, fmt.Sprint("payload ", i), []byte(body), res, want)
		if res.Err != nil {
			continue
		}
		accepted++
		checkOutputs(t, []byte(body), res, scrapeTime)
		// Enriched, with target and external labels.
		c = NewTargetCache(testTarget(), true)
		res = c.Process([]byte(body), "text/plain", scrapeTime, time.Second, testIndex(1, baseTeams), nil)
		if res.Err != nil {
			t.Fatalf("payload %d: enriched scrape failed: %v", i, res.Err)
		}
		checkOutputs(t, []byte(body), res, scrapeTime)
		// The same payload as OpenMetrics, which the reference parser reads.
		om := body + "# EOF\n"
		wantOM := (&refScraper{om: true}).scrape([]byte(om))
		res = NewTargetCache(bareTarget(), true).Process([]byte(om), "application/openmetrics-text; version=1.0.0", scrapeTime, time.Second, nil, nil)
		compareScrape(t, fmt.Sprint("OpenMetrics payload ", i), []byte(om), res, wantOM)
		if res.Err == nil {
			checkOutputs(t, []byte(om), res, scrapeTime)
		}
	}
	if accepted < 200 {
		t.Fatalf("only %d of 2000 generated payloads were accepted: the generator tests too little", accepted)
	}
	t.Logf("%d of 2000 generated payloads accepted", accepted)
}
