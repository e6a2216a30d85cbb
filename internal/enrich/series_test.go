package enrich

import (
	"bytes"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

	"github.com/prometheus/common/expfmt"
	commonmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

var kubeletTarget = []Label{
	{Name: "instance", Value: "198.18.0.10:10250"},
	{Name: "job", Value: "kubelet"},
	{Name: "metrics_path", Value: "/metrics/cadvisor"},
	{Name: "node", Value: "node-a"},
}

// series is one label set interned in a table of its own.
type series struct {
	table *model.LabelTable
	ref   model.SeriesRef
}

func intern(ls []Label) series {
	in := model.NewLabelInterner(1)
	ref := in.Intern(ls)
	return series{in.Table(), ref}
}

// decode unmarshals the series' encoding as a receiver would.
func decode(t testing.TB, s series) []Label {
	t.Helper()
	var ts prompb.TimeSeries
	if err := ts.Unmarshal(s.table.AppendEncoded(nil, s.ref)); err != nil {
		t.Fatalf("prompb.TimeSeries does not decode the series: %v", err)
	}
	var out []Label
	for _, l := range ts.Labels {
		out = append(out, Label{Name: l.Name, Value: l.Value})
	}
	return out
}

func TestBuild(t *testing.T) {
	for _, tc := range []struct {
		name              string
		scraped           []string
		target, namespace []Label
		want              []Label
	}{
		{
			name:      "namespace labels added, output sorted",
			scraped:   []string{"__name__", "container_cpu_usage_seconds_total", "namespace", "web", "pod", "web-0"},
			target:    kubeletTarget,
			namespace: []Label{{Name: "team", Value: "frontend"}},
			want: []Label{
				{Name: "__name__", Value: "container_cpu_usage_seconds_total"}, {Name: "instance", Value: "198.18.0.10:10250"}, {Name: "job", Value: "kubelet"},
				{Name: "metrics_path", Value: "/metrics/cadvisor"}, {Name: "namespace", Value: "web"}, {Name: "node", Value: "node-a"}, {Name: "pod", Value: "web-0"}, {Name: "team", Value: "frontend"},
			},
		},
		{
			name:    "target label wins; the scraped one becomes exported_",
			scraped: []string{"__name__", "m", "job", "cadvisor", "instance", "10.0.0.1:1"},
			target:  []Label{{Name: "instance", Value: "i:1"}, {Name: "job", Value: "kubelet"}},
			want:    []Label{{Name: "__name__", Value: "m"}, {Name: "exported_instance", Value: "10.0.0.1:1"}, {Name: "exported_job", Value: "cadvisor"}, {Name: "instance", Value: "i:1"}, {Name: "job", Value: "kubelet"}},
		},
		{
			name:    "exported_ taken already: the prefix repeats",
			scraped: []string{"__name__", "m", "job", "a", "exported_job", "b"},
			target:  []Label{{Name: "job", Value: "kubelet"}},
			want:    []Label{{Name: "__name__", Value: "m"}, {Name: "exported_exported_job", Value: "a"}, {Name: "exported_job", Value: "b"}, {Name: "job", Value: "kubelet"}},
		},
		{
			name:      "namespace label never overwrites a scraped label",
			scraped:   []string{"__name__", "m", "namespace", "web", "pod", "web-0"},
			namespace: []Label{{Name: "pod", Value: "clash"}, {Name: "team", Value: "frontend"}},
			want:      []Label{{Name: "__name__", Value: "m"}, {Name: "exported_pod", Value: "clash"}, {Name: "namespace", Value: "web"}, {Name: "pod", Value: "web-0"}, {Name: "team", Value: "frontend"}},
		},
		{
			name:      "namespace label never overwrites a target label",
			scraped:   []string{"__name__", "m", "namespace", "web"},
			target:    kubeletTarget,
			namespace: []Label{{Name: "node", Value: "ns-node"}},
			want: []Label{
				{Name: "__name__", Value: "m"}, {Name: "exported_node", Value: "ns-node"}, {Name: "instance", Value: "198.18.0.10:10250"}, {Name: "job", Value: "kubelet"},
				{Name: "metrics_path", Value: "/metrics/cadvisor"}, {Name: "namespace", Value: "web"}, {Name: "node", Value: "node-a"},
			},
		},
		{
			name:      "namespace clash with exported_ taken: repeated prefix",
			scraped:   []string{"__name__", "m", "team", "s", "exported_team", "e"},
			namespace: []Label{{Name: "team", Value: "frontend"}},
			want:      []Label{{Name: "__name__", Value: "m"}, {Name: "exported_exported_team", Value: "frontend"}, {Name: "exported_team", Value: "e"}, {Name: "team", Value: "s"}},
		},
		{
			name:      "namespace clash with a target label that pushed a scraped one to exported_",
			scraped:   []string{"__name__", "m", "job", "scraped"},
			target:    []Label{{Name: "job", Value: "kubelet"}},
			namespace: []Label{{Name: "job", Value: "ns"}},
			want:      []Label{{Name: "__name__", Value: "m"}, {Name: "exported_exported_job", Value: "ns"}, {Name: "exported_job", Value: "scraped"}, {Name: "job", Value: "kubelet"}},
		},
		{
			name:      "empty values dropped",
			scraped:   []string{"__name__", "m", "image", "", "pod", "p"},
			target:    []Label{{Name: "instance", Value: "i:1"}, {Name: "job", Value: ""}},
			namespace: []Label{{Name: "team", Value: ""}, {Name: "tier", Value: "web"}},
			want:      []Label{{Name: "__name__", Value: "m"}, {Name: "instance", Value: "i:1"}, {Name: "pod", Value: "p"}, {Name: "tier", Value: "web"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Builder
			// Builder reuses scratch space: build something else first.
			b.Build(labels.FromStrings("__name__", "warmup", "a", "b", "c", "d", "e", "f"), kubeletTarget, []Label{{Name: "x", Value: "y"}})
			s := intern(b.Build(labels.FromStrings(tc.scraped...), tc.target, tc.namespace))
			got := decode(t, s)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Build =\n  %v\nwant\n  %v", got, tc.want)
			}
			if !sort.SliceIsSorted(got, func(i, j int) bool { return got[i].Name < got[j].Name }) {
				t.Fatal("labels not sorted")
			}
			// Same labels, same identity.
			var b2 Builder
			s2 := intern(b2.Build(labels.FromStrings(tc.scraped...), tc.target, tc.namespace))
			if s2.table.Hash(s2.ref) != s.table.Hash(s.ref) {
				t.Fatal("equal label sets encode differently")
			}
		})
	}
}

func TestBuildDoesNotAliasScratch(t *testing.T) {
	var b Builder
	s1 := intern(b.Build(labels.FromStrings("__name__", "a", "x", "1"), kubeletTarget, nil))
	keep := s1.table.AppendEncoded(nil, s1.ref)
	b.Build(labels.FromStrings("__name__", "zzzz", "y", "2"), nil, []Label{{Name: "t", Value: "v"}})
	if !bytes.Equal(keep, s1.table.AppendEncoded(nil, s1.ref)) {
		t.Fatal("a later Build modified an earlier series")
	}
}

func TestSeriesOfSorts(t *testing.T) {
	var b Builder
	s := intern(b.SeriesOf([]Label{{Name: "job", Value: "kubelet"}, {Name: "__name__", Value: "up"}, {Name: "instance", Value: "i:1"}}))
	want := []Label{{Name: "__name__", Value: "up"}, {Name: "instance", Value: "i:1"}, {Name: "job", Value: "kubelet"}}
	if got := decode(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("SeriesOf = %v", got)
	}
}

// parseText parses one exposition with the reference parser and returns the
// single sample's labels (metric name as __name__), value and timestamp.
func parseText(t testing.TB, text string) ([]Label, float64, int64) {
	t.Helper()
	p := expfmt.NewTextParser(commonmodel.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("expfmt rejects %q: %v", text, err)
	}
	if len(fams) != 1 {
		t.Fatalf("%d families in %q", len(fams), text)
	}
	for name, f := range fams {
		if len(f.Metric) != 1 {
			t.Fatalf("%d metrics in %q", len(f.Metric), text)
		}
		m := f.Metric[0]
		ls := []Label{{Name: "__name__", Value: name}}
		for _, lp := range m.Label {
			ls = append(ls, Label{Name: lp.GetName(), Value: lp.GetValue()})
		}
		SortLabels(ls)
		return ls, m.GetUntyped().GetValue(), m.GetTimestampMs()
	}
	panic("unreachable")
}

func TestAppendSeriesTextRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ls     []string
		want   string
		v      float64
		ts     int64
		hasTS  bool
		vcheck func(float64) bool
	}{
		{name: "plain", ls: []string{"__name__", "up"}, want: "up 1\n", v: 1},
		{name: "labels", ls: []string{"__name__", "m", "pod", "web-0", "namespace", "web"}, want: `m{namespace="web",pod="web-0"} 2.5 1700000000000` + "\n", v: 2.5, ts: 1700000000000, hasTS: true},
		{name: "quote", ls: []string{"__name__", "m", "a", `say "hi"`}, want: `m{a="say \"hi\""} 0` + "\n"},
		{name: "backslash", ls: []string{"__name__", "m", "a", `C:\dir\`}, want: `m{a="C:\\dir\\"} 0` + "\n"},
		{name: "backslash before quote", ls: []string{"__name__", "m", "a", `\"`}, want: `m{a="\\\""} 0` + "\n"},
		{name: "newline", ls: []string{"__name__", "m", "a", "two\nlines"}, want: `m{a="two\nlines"} 0` + "\n"},
		{name: "brace and comma", ls: []string{"__name__", "m", "a", `},b="x`}, want: `m{a="},b=\"x"} 0` + "\n"},
		{name: "unicode", ls: []string{"__name__", "m", "team", "équipe ☃"}, want: `m{team="équipe ☃"} 0` + "\n"},
		{name: "negative timestamp", ls: []string{"__name__", "m"}, want: "m -1 -5\n", v: -1, ts: -5, hasTS: true},
		{name: "NaN", ls: []string{"__name__", "m"}, want: "m NaN\n", v: math.NaN(), vcheck: math.IsNaN},
		{name: "+Inf", ls: []string{"__name__", "m"}, want: "m +Inf\n", v: math.Inf(1)},
		{name: "-Inf", ls: []string{"__name__", "m"}, want: "m -Inf\n", v: math.Inf(-1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Builder
			s := intern(b.Build(labels.FromStrings(tc.ls...), nil, nil))
			line := string(AppendSampleLine(nil, s.table, s.ref, tc.ts, tc.v, tc.hasTS))
			if line != tc.want {
				t.Fatalf("line = %q, want %q", line, tc.want)
			}
			got, v, ts := parseText(t, line)
			if want := decode(t, s); !reflect.DeepEqual(got, want) {
				t.Fatalf("parsed back %v, want %v", got, want)
			}
			if tc.vcheck != nil {
				if !tc.vcheck(v) {
					t.Fatalf("value %v", v)
				}
			} else if v != tc.v {
				t.Fatalf("value %v, want %v", v, tc.v)
			}
			if tc.hasTS && ts != tc.ts {
				t.Fatalf("timestamp %d, want %d", ts, tc.ts)
			}
		})
	}
}

func TestAppendEscapedHelp(t *testing.T) {
	for in, want := range map[string]string{
		"plain":           "plain",
		`a\b`:             `a\\b`,
		"two\nlines":      `two\nlines`,
		`quotes "stay"`:   `quotes "stay"`,
		"\\n is not a nl": `\\n is not a nl`,
	} {
		if got := string(AppendEscapedHelp(nil, []byte(in))); got != want {
			t.Errorf("AppendEscapedHelp(%q) = %q, want %q", in, got, want)
		}
		text := "# HELP m " + want + "\n# TYPE m gauge\nm 1\n"
		p := expfmt.NewTextParser(commonmodel.LegacyValidation)
		fams, err := p.TextToMetricFamilies(strings.NewReader(text))
		if err != nil {
			t.Fatalf("expfmt: %v", err)
		}
		if got := fams["m"].GetHelp(); got != in {
			t.Errorf("HELP %q round-trips to %q", in, got)
		}
	}
}

// fuzzLabels decodes a label list from fuzz input: NUL-separated fields,
// name then value. Names are made valid (they always are by the time they
// reach Build: the parser validated them, or SanitizeLabelName made them).
func fuzzLabels(s string, prefix string) []Label {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, "\x00")
	var out []Label
	seen := map[string]bool{}
	for i := 0; i+1 < len(parts); i += 2 {
		name := prefix + SanitizeLabelName(parts[i])
		if name == "__name__" || seen[name] || strings.HasPrefix(name, "__") {
			continue
		}
		seen[name] = true
		out = append(out, Label{Name: name, Value: parts[i+1]})
	}
	SortLabels(out)
	return out
}

func FuzzBuild(f *testing.F) {
	f.Add("container_cpu_usage_seconds_total", "namespace\x00web\x00pod\x00web-0\x00job\x00x", "instance\x00a:1\x00job\x00kubelet", "team\x00frontend\x00pod\x00clash")
	f.Add("m", "a\x00say \"hi\"\x00b\x00C:\\dir\\\x00c\x00two\nlines", "", "")
	f.Add("m", "exported_job\x00e\x00job\x00j", "job\x00kubelet", "job\x00ns\x00exported_job\x00x")
	f.Add("m", "a\x00\x00b\x00}", "c\x00", "d\x00\\\"")
	f.Add("m", "x\x00équipe ☃", "", "team\x00\r\t")
	f.Fuzz(func(t *testing.T, name, scraped, target, namespace string) {
		if !commonmodel.LegacyValidation.IsValidMetricName(name) {
			return
		}
		sc := fuzzLabels(scraped, "")
		tg := fuzzLabels(target, "")
		ns := fuzzLabels(namespace, "")
		for _, ls := range [][]Label{sc, tg, ns} {
			for _, l := range ls {
				if !utf8.ValidString(l.Value) {
					return // Kubernetes and the text format only carry UTF-8
				}
			}
		}
		kv := []string{"__name__", name}
		for _, l := range sc {
			kv = append(kv, l.Name, l.Value)
		}
		var b Builder
		s := intern(b.Build(labels.FromStrings(kv...), tg, ns))
		got := decode(t, s)
		// BuildFrom, given the same labels in a slice in the order written,
		// builds the same set.
		var bf Builder
		from := append([]Label{{Name: "__name__", Value: name}}, sc...)
		if same := decode(t, intern(bf.BuildFrom(from, tg, ns))); !reflect.DeepEqual(same, got) {
			t.Fatalf("BuildFrom = %v, Build = %v", same, got)
		}

		// Invariants: sorted, unique, no empty value, every target label with
		// the target's value, every scraped and namespace value kept somewhere.
		names := map[string]string{}
		for i, l := range got {
			if l.Value == "" {
				t.Fatalf("empty value for %s in %v", l.Name, got)
			}
			if i > 0 && got[i-1].Name >= l.Name {
				t.Fatalf("not sorted/unique: %v", got)
			}
			names[l.Name] = l.Value
		}
		for _, l := range tg {
			if l.Value != "" && names[l.Name] != l.Value {
				t.Fatalf("target label %v lost: %v", l, got)
			}
		}
		want := 1
		for _, ls := range [][]Label{sc, tg, ns} {
			for _, l := range ls {
				if l.Value != "" {
					want++
				}
			}
		}
		if len(got) != want {
			t.Fatalf("%d labels, want %d: %v (scraped %v target %v namespace %v)", len(got), want, got, sc, tg, ns)
		}

		line := string(AppendSampleLine(nil, s.table, s.ref, 1700000000000, 1.5, true))
		back, v, ts := parseText(t, line)
		if !reflect.DeepEqual(back, got) || v != 1.5 || ts != 1700000000000 {
			t.Fatalf("round trip of %q: %v %v %v, want %v", line, back, v, ts, got)
		}
	})
}

func TestExternalLabelsNeverOverride(t *testing.T) {
	b := Builder{External: []Label{{Name: "cluster", Value: "prod"}, {Name: "team", Value: "platform"}, {Name: "__replica__", Value: "r-0"}}}
	got := decode(t, intern(b.Build(labels.FromStrings("__name__", "m", "namespace", "web"), kubeletTarget, []Label{{Name: "team", Value: "frontend"}})))
	want := []Label{
		{Name: "__name__", Value: "m"}, {Name: "__replica__", Value: "r-0"}, {Name: "cluster", Value: "prod"}, {Name: "instance", Value: "198.18.0.10:10250"}, {Name: "job", Value: "kubelet"},
		{Name: "metrics_path", Value: "/metrics/cadvisor"}, {Name: "namespace", Value: "web"}, {Name: "node", Value: "node-a"}, {Name: "team", Value: "frontend"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Build with external labels =\n  %v\nwant\n  %v", got, want)
	}
	// The relay's own series get them too.
	got = decode(t, intern(b.SeriesOf([]Label{{Name: "__name__", Value: "up"}, {Name: "cluster", Value: "own"}})))
	want = []Label{{Name: "__name__", Value: "up"}, {Name: "__replica__", Value: "r-0"}, {Name: "cluster", Value: "own"}, {Name: "team", Value: "platform"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("SeriesOf with external labels = %v, want %v", got, want)
	}
}

// TestSortLabels checks the hand-written sort against slices.SortFunc on
// every permutation shape that matters: short, long, sorted runs, reversed.
func TestSortLabels(t *testing.T) {
	names := strings.Fields("__name__ container id image instance job metrics_path name namespace node pod team A Z _a a0 a")
	for n := 0; n <= 40; n++ {
		for _, shape := range []string{"runs", "reversed", "rotated"} {
			ls := make([]Label, n)
			for i := range ls {
				ls[i] = Label{Name: names[i%len(names)] + strings.Repeat("x", i/len(names)), Value: string(rune('a' + i%26))}
			}
			switch shape {
			case "runs":
				sort.Slice(ls[:n/2], func(i, j int) bool { return ls[i].Name < ls[j].Name })
				sort.Slice(ls[n/2:], func(i, j int) bool { return ls[n/2+i].Name < ls[n/2+j].Name })
			case "reversed":
				sort.Slice(ls, func(i, j int) bool { return ls[i].Name > ls[j].Name })
			case "rotated":
				if n > 0 {
					ls = append(ls[n/3:], ls[:n/3]...)
				}
			}
			want := append([]Label(nil), ls...)
			sort.SliceStable(want, func(i, j int) bool { return want[i].Name < want[j].Name })
			got := append([]Label(nil), ls...)
			SortLabels(got)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%d labels, %s: SortLabels =\n%v\nwant\n%v", n, shape, got, want)
			}
		}
	}
}

// BenchmarkSortLabels sorts the set a new cAdvisor series has once its
// target and namespace labels are appended.
func BenchmarkSortLabels(b *testing.B) {
	in := []Label{{Name: "__name__", Value: "container_cpu_usage_seconds_total"}, {Name: "container", Value: "c"}, {Name: "cpu", Value: "total"},
		{Name: "id", Value: "/kubepods"}, {Name: "image", Value: "i"}, {Name: "name", Value: "n"}, {Name: "namespace", Value: "web"}, {Name: "pod", Value: "p"}}
	in = append(in, kubeletTarget...)
	in = append(in, Label{Name: "exported_pod", Value: "x"}, Label{Name: "team", Value: "frontend"})
	ls := make([]Label, len(in))
	b.ReportAllocs()
	for b.Loop() {
		copy(ls, in)
		SortLabels(ls)
	}
}
