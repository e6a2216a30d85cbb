package fakekubelet

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var bedNamespaces = []string{"frontend-service1", "frontend-service2", "backend-service", "unlabelled-service"}

type sample struct {
	name  string
	ns    string
	pod   string
	ts    int64
	hasTS bool
	key   string // every label but namespace
}

func parseSamples(t *testing.T, data []byte) []sample {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	var out []sample
	for name, f := range fams {
		for _, m := range f.Metric {
			s := sample{name: name}
			var kb strings.Builder
			kb.WriteString(name)
			for _, l := range m.Label {
				switch l.GetName() {
				case "namespace":
					s.ns = l.GetValue()
					continue
				case "pod", "pod_name":
					if l.GetValue() != "" {
						s.pod = l.GetValue()
					}
				}
				kb.WriteString("," + l.GetName() + "=" + l.GetValue())
			}
			s.key = kb.String()
			if m.TimestampMs != nil {
				s.ts, s.hasTS = m.GetTimestampMs(), true
			}
			out = append(out, s)
		}
	}
	return out
}

func TestRewriteRealCaptures(t *testing.T) {
	for short := range Captures {
		if short == "kubelet-metrics" {
			continue
		}
		t.Run(short, func(t *testing.T) {
			orig, err := ReadCapture(short)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Prepare(orig, RewriteOptions{Namespaces: bedNamespaces, Offset: 1})
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now().Truncate(time.Millisecond)
			var buf bytes.Buffer
			if _, err := c.WriteTo(&buf, now); err != nil {
				t.Fatal(err)
			}
			before := parseSamples(t, orig)
			after := parseSamples(t, buf.Bytes())
			if len(before) != len(after) || len(after) != c.Series {
				t.Fatalf("series: before %d after %d prepared %d", len(before), len(after), c.Series)
			}
			origByKey := map[string]sample{}
			var maxTS int64
			for _, s := range before {
				origByKey[s.key] = s
				if s.hasTS && s.ts > maxTS {
					maxTS = s.ts
				}
			}
			shift := now.UnixMilli() - maxTS
			perNS := map[string]map[string]bool{}
			podNS := map[string]string{}
			var newest int64
			for _, s := range after {
				o, ok := origByKey[s.key]
				if !ok {
					t.Fatalf("series %s not in the capture", s.key)
				}
				// Timestamps: moved by one shift; none added or removed.
				if o.hasTS != s.hasTS {
					t.Fatalf("%s: timestamp presence changed", s.key)
				}
				if s.hasTS {
					if s.ts != o.ts+shift {
						t.Fatalf("%s: ts %d, want %d+%d", s.key, s.ts, o.ts, shift)
					}
					newest = max(newest, s.ts)
				}
				// Namespaces: node-level series untouched, pod series in a bed namespace,
				// one namespace per pod.
				if s.pod == "" || o.ns == "" {
					if s.ns != o.ns {
						t.Fatalf("%s: node-level namespace %q changed to %q", s.key, o.ns, s.ns)
					}
					continue
				}
				if !strings.HasSuffix(s.ns, "-service") && !strings.Contains(s.ns, "-service") {
					t.Fatalf("%s: namespace %q is not a bed namespace", s.key, s.ns)
				}
				k := o.ns + "/" + s.pod
				if prev, ok := podNS[k]; ok && prev != s.ns {
					t.Fatalf("pod %s in two namespaces %s and %s", k, prev, s.ns)
				}
				podNS[k] = s.ns
				if perNS[s.ns] == nil {
					perNS[s.ns] = map[string]bool{}
				}
				perNS[s.ns][k] = true
			}
			if maxTS != 0 && newest != now.UnixMilli() {
				t.Fatalf("newest timestamp %d, want now %d", newest, now.UnixMilli())
			}
			for _, ns := range bedNamespaces {
				if len(perNS[ns]) == 0 {
					t.Fatalf("namespace %s got no pods: %v", ns, perNS)
				}
			}
			if len(podNS) != len(c.PodNamespaces) {
				t.Fatalf("pods: %d seen, %d mapped", len(podNS), len(c.PodNamespaces))
			}
			// A later scrape moves every timestamp by the elapsed time.
			later := c.AppendTo(nil, now.Add(5*time.Second))
			for _, s := range parseSamples(t, later) {
				if s.hasTS && s.ts != origByKey[s.key].ts+shift+5000 {
					t.Fatalf("later scrape: %s ts %d", s.key, s.ts)
				}
			}
			t.Logf("%s: %d series, %d pods over %d namespaces, shift %s", short, c.Series, len(podNS), len(perNS), time.Duration(shift)*time.Millisecond)
		})
	}
}

func TestRewriteKeepsUntimestampedLines(t *testing.T) {
	in := []byte("# TYPE a gauge\na{namespace=\"x\",pod=\"p\"} 1\na{namespace=\"\",pod=\"\"} 2 1000\nb 3 2000\n")
	c, err := Prepare(in, RewriteOptions{Namespaces: []string{"n1"}})
	if err != nil {
		t.Fatal(err)
	}
	got := string(c.AppendTo(nil, time.UnixMilli(10000)))
	want := "# TYPE a gauge\na{namespace=\"n1\",pod=\"p\"} 1\na{namespace=\"\",pod=\"\"} 2 9000\nb 3 10000\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestRewriteEscapedValues(t *testing.T) {
	in := []byte(`a{id="/system.slice/x\\x2d\"}y",namespace="ns",pod="p{1}"} 1` + "\n")
	c, err := Prepare(in, RewriteOptions{Namespaces: []string{"n1"}})
	if err != nil {
		t.Fatal(err)
	}
	got := string(c.AppendTo(nil, time.Now()))
	want := `a{id="/system.slice/x\\x2d\"}y",namespace="n1",pod="p{1}"} 1` + "\n"
	if got != want {
		t.Fatalf("got %s want %s", got, want)
	}
}

func BenchmarkScrape(b *testing.B) {
	orig, _ := ReadCapture("1_35")
	c, err := Prepare(orig, RewriteOptions{Namespaces: bedNamespaces})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, c.Size())
	b.SetBytes(int64(c.Size()))
	for b.Loop() {
		buf = c.AppendTo(buf[:0], time.Now())
	}
}
