package remotewrite

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
)

// expectedRequest builds, with prompb structs, the request the encoder must
// produce: external labels merged in, the series' own labels winning.
func expectedRequest(samples []Sample, external []Label) prompb.WriteRequest {
	var wr prompb.WriteRequest
	for _, s := range samples {
		var ls []prompb.Label
		own := map[string]bool{}
		it := s.Series.Labels()
		for it.Next() {
			ls = append(ls, prompb.Label{Name: string(it.Name), Value: string(it.Value)})
			own[string(it.Name)] = true
		}
		for _, e := range external {
			if !own[e.Name] {
				ls = append(ls, prompb.Label{Name: e.Name, Value: e.Value})
			}
		}
		slices.SortFunc(ls, func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) })
		wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{
			Labels:  ls,
			Samples: []prompb.Sample{{Value: s.V, Timestamp: s.T}},
		})
	}
	return wr
}

// assertSameRequest compares two requests field by field, values by bits.
func assertSameRequest(t *testing.T, got, want *prompb.WriteRequest) {
	t.Helper()
	if len(got.Timeseries) != len(want.Timeseries) {
		t.Fatalf("got %d series, want %d", len(got.Timeseries), len(want.Timeseries))
	}
	for i := range want.Timeseries {
		g, w := got.Timeseries[i], want.Timeseries[i]
		if labelsKey(g.Labels) != labelsKey(w.Labels) {
			t.Fatalf("series %d labels:\n got %s\nwant %s", i, labelsKey(g.Labels), labelsKey(w.Labels))
		}
		if len(g.Samples) != len(w.Samples) {
			t.Fatalf("series %d: %d samples, want %d", i, len(g.Samples), len(w.Samples))
		}
		for j := range w.Samples {
			if g.Samples[j].Timestamp != w.Samples[j].Timestamp ||
				math.Float64bits(g.Samples[j].Value) != math.Float64bits(w.Samples[j].Value) {
				t.Fatalf("series %d sample %d = %+v, want %+v", i, j, g.Samples[j], w.Samples[j])
			}
		}
	}
}

func TestEncodeMatchesPrompbOnRealSeries(t *testing.T) {
	fx := loadFixture(t)
	for _, tc := range []struct {
		name     string
		external []Label
	}{
		{"no external labels", nil},
		{"HA pair", []Label{{"__replica__", "relay-0"}, {"cluster", "prod-eu-1"}}},
		{"before, between, after and clashing", []Label{
			{"AAA", "upper-sorts-first"}, {"__replica__", "r"}, {"container", "ext-loses"},
			{"job", "ext-loses-too"}, {"k8s_cluster", "c"}, {"zzz", "last"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var samples []Sample
			for i, f := range fx {
				samples = append(samples, Sample{Series: f.series, T: f.t + int64(i), V: f.v})
			}
			e := encoder{external: newExternalLabels(tc.external)}
			body, n, invalid := e.encode(samples)
			if n != len(samples) || invalid != 0 {
				t.Fatalf("encoded %d, invalid %d; want %d, 0", n, invalid, len(samples))
			}
			got, err := decodeRequest(body)
			if err != nil {
				t.Fatal(err)
			}
			want := expectedRequest(samples, tc.external)
			assertSameRequest(t, got, &want)
			for _, ts := range got.Timeseries {
				if err := checkLabels(ts.Labels); err != nil {
					t.Fatalf("%s: %v", labelsKey(ts.Labels), err)
				}
			}
			// Encoding again reuses the buffers and gives the same bytes.
			again, _, _ := e.encode(samples)
			if string(again) != string(body) {
				t.Fatal("second encode of the same batch differs")
			}
		})
	}
}

func TestEncodeExternalLabelsNeverOverride(t *testing.T) {
	s := newSeries("__name__", "up", "cluster", "own", "job", "kubelet")
	e := encoder{external: newExternalLabels([]Label{{"__replica__", "b"}, {"cluster", "ext"}, {"zone", "z"}})}
	body, _, _ := e.encode([]Sample{{Series: s, T: 1, V: 1}})
	got, err := decodeRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	want := "__name__=up,__replica__=b,cluster=own,job=kubelet,zone=z,"
	if k := labelsKey(got.Timeseries[0].Labels); k != want {
		t.Fatalf("labels %s, want %s", k, want)
	}
}

func TestEncodeSampleValuesBitExact(t *testing.T) {
	s := newSeries("__name__", "x")
	values := []float64{
		math.Float64frombits(value.StaleNaN), math.NaN(), math.Inf(1), math.Inf(-1),
		0, math.Copysign(0, -1), math.SmallestNonzeroFloat64, math.MaxFloat64, -1.5,
	}
	times := []int64{0, 1, -1, math.MaxInt64, math.MinInt64, 1782468875486, 127, 128}
	var samples []Sample
	for _, v := range values {
		for _, ts := range times {
			samples = append(samples, Sample{Series: s, T: ts, V: v})
		}
	}
	var e encoder
	body, _, _ := e.encode(samples)
	got, err := decodeRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	for i, ts := range got.Timeseries {
		g := ts.Samples[0]
		if math.Float64bits(g.Value) != math.Float64bits(samples[i].V) || g.Timestamp != samples[i].T {
			t.Fatalf("sample %d: got bits %#x t=%d, want %#x t=%d",
				i, math.Float64bits(g.Value), g.Timestamp, math.Float64bits(samples[i].V), samples[i].T)
		}
	}
	if bits := math.Float64bits(got.Timeseries[0].Samples[0].Value); bits != value.StaleNaN {
		t.Fatalf("stale marker arrived as %#x", bits)
	}
}

// TestEncodeTimeSeriesSizes covers TimeSeries whose length varint is 1, 2
// and 3 bytes, around the 2-byte slot the encoder reserves.
func TestEncodeTimeSeriesSizes(t *testing.T) {
	var samples []Sample
	for _, n := range []int{0, 50, 90, 100, 110, 127, 128, 200, 16000, 16384, 17000, 70000} {
		s := newSeries("__name__", "m", "pad", strings.Repeat("p", n+1))
		samples = append(samples, Sample{Series: s, T: int64(n), V: float64(n)})
	}
	for _, external := range [][]Label{nil, {{"a", "b"}}} {
		e := encoder{external: newExternalLabels(external)}
		body, n, _ := e.encode(samples)
		if n != len(samples) {
			t.Fatalf("encoded %d of %d", n, len(samples))
		}
		got, err := decodeRequest(body)
		if err != nil {
			t.Fatal(err)
		}
		want := expectedRequest(samples, external)
		assertSameRequest(t, got, &want)
	}
}

func TestEncodeSkipsMalformedSeries(t *testing.T) {
	good := newSeries("__name__", "up", "job", "a")
	goodEnc := good.AppendEncoded(nil)
	bad := map[string]*Series{
		"unsorted":        newSeries("job", "a", "__name__", "up"),
		"duplicate":       newSeries("__name__", "up", "job", "a", "job", "b"),
		"empty value":     newSeries("__name__", "up", "job", ""),
		"empty name":      newSeries("", "x", "__name__", "up"),
		"no __name__":     newSeries("job", "a"),
		"truncated":       NewSeries(goodEnc[:len(goodEnc)-1]),
		"garbage":         NewSeries([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}),
		"wrong field tag": NewSeries(append([]byte{0x12, 0x00}, goodEnc...)),
		"no labels":       NewSeries(nil),
	}
	for name, s := range bad {
		t.Run(name, func(t *testing.T) {
			var e encoder
			samples := []Sample{{Series: good, T: 1, V: 1}, {Series: s, T: 2, V: 2}, {Series: good, T: 3, V: 3}}
			body, n, invalid := e.encode(samples)
			if n != 2 || invalid != 1 {
				t.Fatalf("n=%d invalid=%d, want 2 and 1", n, invalid)
			}
			got, err := decodeRequest(body)
			if err != nil {
				t.Fatal(err)
			}
			want := expectedRequest([]Sample{samples[0], samples[2]}, nil)
			assertSameRequest(t, got, &want)
			if ValidateSeries(s) == nil {
				t.Fatal("ValidateSeries accepted it")
			}
		})
	}
	if err := ValidateSeries(good); err != nil {
		t.Fatal(err)
	}
	if err := ValidateSeries(newSeries("__name__", "up", "bad-name", "x")); err == nil {
		t.Fatal("ValidateSeries accepted an invalid label name")
	}
}

func TestEncodeNothingValid(t *testing.T) {
	var e encoder
	body, n, invalid := e.encode([]Sample{{Series: newSeries("job", "x"), T: 1}})
	if body != nil || n != 0 || invalid != 1 {
		t.Fatalf("body=%v n=%d invalid=%d", body, n, invalid)
	}
}

// FuzzEncodeLabels feeds arbitrary bytes as a series' encoded labels. The
// encoder must never panic, and whatever it accepts must decode with prompb
// to labels that follow the rules, with the external label merged in.
func FuzzEncodeLabels(f *testing.F) {
	f.Add(newSeries("__name__", "up", "job", "a").AppendEncoded(nil))
	f.Add(newSeries("__name__", "up", "cluster", "own").AppendEncoded(nil))
	f.Add(newSeries("job", "a", "__name__", "up").AppendEncoded(nil))
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		// The fast path of parseLabel agrees with the general one.
		n1, v1, size1, ok1 := parseLabel(b)
		n2, v2, size2, ok2 := parseLabelSlow(b)
		if ok1 != ok2 || size1 != size2 || string(n1) != string(n2) || string(v1) != string(v2) {
			t.Fatalf("parseLabel %q %q %d %v, parseLabelSlow %q %q %d %v", n1, v1, size1, ok1, n2, v2, size2, ok2)
		}
		s := NewSeries(b)
		e := encoder{external: newExternalLabels([]Label{{"cluster", "ext"}})}
		body, n, invalid := e.encode([]Sample{{Series: s, T: 5, V: 1}})
		if n+invalid != 1 {
			t.Fatalf("n=%d invalid=%d", n, invalid)
		}
		if n == 0 {
			return
		}
		got, err := decodeRequest(body)
		if err != nil {
			t.Fatal(err)
		}
		ls := got.Timeseries[0].Labels
		for i, l := range ls {
			if l.Value == "" || l.Name == "" || i > 0 && ls[i-1].Name >= l.Name {
				t.Fatalf("accepted labels break the rules: %s", labelsKey(ls))
			}
		}
		// Only the name characters are left to ValidateSeries.
		var own []labels.Label
		it := NewLabelIter(b)
		for it.Next() {
			own = append(own, labels.Label{Name: string(it.Name), Value: string(it.Value)})
		}
		if it.Err() {
			t.Fatal("encoder accepted what LabelIter rejects")
		}
		if len(ls) != len(own)+1 && !slices.ContainsFunc(own, func(l labels.Label) bool { return l.Name == "cluster" }) {
			t.Fatalf("external label not merged: %s", labelsKey(ls))
		}
	})
}
