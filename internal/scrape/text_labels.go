package scrape

import (
	commonmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
)

// fastLabels is Labels for the common shape of a new series,
// name{a="b",c="d"} with legacy names and printable ASCII values without
// escapes, outside histograms and summaries (whose le and quantile values
// the reference parser normalizes). It builds what the reference parser
// builds (__name__ first, then the labels in order, sorted), without a
// parser and lexer per line, which were about half the cost of a first
// scrape (BenchmarkProcessCold). Any other shape returns false and goes to
// the reference parser; FuzzTextScanner compares the two.
func (s *TextScanner) fastLabels(l *labels.Labels) bool {
	if s.mtype == "histogram" || s.mtype == "summary" || isBlank(s.b[s.lineStart]) {
		return false // (the reference keeps leading blanks in the name)
	}
	b := s.series
	i := 0
	for i < len(b) && metricNameChar[b[i]] && (i > 0 || b[i] < '0' || b[i] > '9') {
		i++
	}
	if i == 0 {
		return false
	}
	nameEnd := i
	type span struct{ n0, n1, v0, v1 int }
	var spansBuf [16]span
	spans := spansBuf[:0]
	if i < len(b) {
		if b[i] != '{' {
			return false
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
				return false
			}
			n1 := i
			i += 2
			v0 := i
			for i < len(b) && b[i] != '"' {
				if c := b[i]; c < 0x20 || c > 0x7e || c == '\\' {
					return false
				}
				i++
			}
			if i == len(b) {
				return false
			}
			spans = append(spans, span{n0, n1, v0, i})
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
			return false
		}
		if i != len(b) {
			return false
		}
	}
	// One copy of the series, as the reference parser makes, so that the
	// labels never point into the scrape buffer whatever labels build is used.
	str := string(b)
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

func labelNameChar(c byte, first bool) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
}
