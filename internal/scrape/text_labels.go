package scrape

import (
	"bytes"
	"encoding/binary"
	"unsafe"

	commonmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// labelSpan is where one label's name and value are in TextScanner.series.
type labelSpan struct{ n0, n1, v0, v1 int }

// scanLabels reads the current series when it has the common shape of a
// new series, name{a="b",c="d"} with legacy names and printable ASCII
// values without escapes, outside histograms and summaries (whose le and
// quantile values the reference parser normalizes). It returns the end of
// the metric name and the labels in the order written, appended to spans.
// Any other shape returns false and goes to the reference parser;
// FuzzTextScanner compares the two.
func (s *TextScanner) scanLabels(spans []labelSpan) (int, []labelSpan, bool) {
	if s.mtype == "histogram" || s.mtype == "summary" || isBlank(s.b[s.lineStart]) {
		return 0, spans, false // (the reference keeps leading blanks in the name)
	}
	b := s.series
	i := 0
	for i < len(b) && metricNameChar[b[i]] && (i > 0 || b[i] < '0' || b[i] > '9') {
		i++
	}
	if i == 0 {
		return 0, spans, false
	}
	nameEnd := i
	if i < len(b) {
		if b[i] != '{' {
			return 0, spans, false
		}
		i++
		for {
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			n0 := i
			for i < len(b) && labelNameChar(b[i], i == n0) {
				i++
			}
			if i == n0 || i+1 >= len(b) || b[i] != '=' || b[i+1] != '"' {
				return 0, spans, false
			}
			n1 := i
			i += 2
			v0 := i
			q := bytes.IndexByte(b[i:], '"')
			if q < 0 || !plainValue(b[i:i+q]) {
				return 0, spans, false
			}
			i += q
			spans = append(spans, labelSpan{n0, n1, v0, i})
			i++ // the closing quote
			if i < len(b) && b[i] == ',' {
				i++
				if i < len(b) && b[i] == '}' {
					i++
					break
				}
				continue
			}
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			return 0, spans, false
		}
		if i != len(b) {
			return 0, spans, false
		}
	}
	return nameEnd, spans, true
}

// fastLabels is Labels for the shapes scanLabels reads. It builds what the
// reference parser builds (__name__ first, then the labels in order,
// sorted), without a parser and lexer per line, which were about half the
// cost of a first scrape (BenchmarkProcessCold).
func (s *TextScanner) fastLabels(l *labels.Labels) bool {
	nameEnd, spans, ok := s.scanLabels(s.spans[:0])
	s.spans = spans
	if !ok {
		return false
	}
	// One copy of the series, as the reference parser makes, so that the
	// labels never point into the scrape buffer whatever labels build is used.
	str := string(s.series)
	if s.sb == nil {
		s.sb = new(labels.ScratchBuilder)
	}
	s.sb.Reset()
	s.sb.Add(commonmodel.MetricNameLabel, str[:nameEnd])
	for _, sp := range spans {
		s.sb.Add(str[sp.n0:sp.n1], str[sp.v0:sp.v1])
	}
	s.sb.Sort()
	*l = s.sb.Labels()
	return true
}

// AppendLabels appends the current series' labels to dst as written,
// __name__ first, unsorted, with empty values kept, when the series has
// the common shape scanLabels reads (ok false: use Labels). The strings
// point into the payload, with no copy: they are valid only until the
// scanner moves on (Next, Reset), and whoever keeps one must clone it.
// It is Labels without its copy of the series and its labels.Labels
// (one string and one allocation per new series), which a first scrape
// pays for every line (BenchmarkProcessCold).
func (s *TextScanner) AppendLabels(dst []model.Label) ([]model.Label, bool) {
	nameEnd, spans, ok := s.scanLabels(s.spans[:0])
	s.spans = spans
	if !ok {
		return dst, false
	}
	b := s.series
	str := func(i, j int) string { return unsafe.String(unsafe.SliceData(b[i:j]), j-i) }
	dst = append(dst, model.Label{Name: commonmodel.MetricNameLabel, Value: str(0, nameEnd)})
	for _, sp := range spans {
		dst = append(dst, model.Label{Name: str(sp.n0, sp.n1), Value: str(sp.v0, sp.v1)})
	}
	return dst, true
}

func labelNameChar(c byte, first bool) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
}

// plainValue reports whether v is printable ASCII without a backslash:
// a label value the reference parser takes as it is. Eight bytes at a
// time (SWAR: the "has a byte less than / more than n" tests of Bit
// Twiddling Hacks), after bytes.IndexByte found the closing quote: label
// values (cgroup paths, image names) are long, and this took a first
// scrape from 1.83 to 1.73 µs a sample (BenchmarkProcessCold, best of 6).
func plainValue(v []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for len(v) >= 8 {
		x := binary.LittleEndian.Uint64(v)
		less := (x - 0x20*ones) &^ x & highs      // a byte below 0x20
		more := (x + (127-0x7e)*ones | x) & highs // a byte above 0x7e
		bs := x ^ '\\'*ones
		bsl := (bs - ones) &^ bs & highs // a backslash
		if less|more|bsl != 0 {
			return false
		}
		v = v[8:]
	}
	for _, c := range v {
		if c < 0x20 || c > 0x7e || c == '\\' {
			return false
		}
	}
	return true
}
