package scrape

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	commonmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

// EntryKind says what Scanner.Next found.
type EntryKind uint8

// The kinds of entry a Scanner yields.
const (
	EntrySeries EntryKind = iota
	EntryHelp
	EntryType
)

// Scanner yields the entries of one payload.
type Scanner interface {
	// Next advances; it returns io.EOF at the end, and ErrMore when a
	// TextScanner fed a chunk (Reset with final false) needs the next one.
	Next() (EntryKind, error)
	// Series returns the current sample: the raw series bytes (name and
	// labels, as written), the timestamp if the line has one, and the value.
	Series() (raw []byte, ts int64, hasTS bool, v float64)
	// Meta returns the family name and the HELP text or TYPE name.
	Meta() (name []byte, text string)
	// Labels parses the current series' labels, fully validated.
	Labels(l *labels.Labels) error
	// Line is the 1-based line number of the current entry.
	Line() int
}

// parserScanner adapts a model/textparse parser (OpenMetrics) to scanner.
type parserScanner struct {
	p     textparse.Parser
	body  []byte
	last  int
	line  int
	name  []byte
	text  string
	raw   []byte
	ts    int64
	hasTS bool
	v     float64
}

func newParserScanner(p textparse.Parser, body []byte) *parserScanner {
	return &parserScanner{p: p, body: body, last: -1}
}

func (s *parserScanner) Next() (EntryKind, error) {
	for {
		et, err := s.p.Next()
		if err != nil {
			if err == io.EOF {
				return 0, io.EOF
			}
			s.line = lineAfter(s.body, s.last)
			return 0, err
		}
		switch et {
		case textparse.EntryHelp:
			n, h := s.p.Help()
			s.name, s.text = n, string(h)
			s.mark(n)
			return EntryHelp, nil
		case textparse.EntryType:
			n, t := s.p.Type()
			s.name, s.text = n, typeName(t)
			s.mark(n)
			return EntryType, nil
		case textparse.EntrySeries:
			raw, tp, v := s.p.Series()
			s.raw, s.v, s.hasTS = raw, v, tp != nil
			if tp != nil {
				s.ts = *tp
			}
			s.mark(raw)
			return EntrySeries, nil
		}
	}
}

func (s *parserScanner) mark(b []byte) { s.last = offsetOf(s.body, b) }

func (s *parserScanner) Series() ([]byte, int64, bool, float64) { return s.raw, s.ts, s.hasTS, s.v }
func (s *parserScanner) Meta() ([]byte, string)                 { return s.name, s.text }
func (s *parserScanner) Labels(l *labels.Labels) error          { s.p.Labels(l); return nil }
func (s *parserScanner) Line() int {
	if s.line == 0 && s.last >= 0 {
		return bytes.Count(s.body[:s.last], []byte{'\n'}) + 1
	}
	return s.line
}

// offsetOf is where sub, a slice of body, starts in body. The parser hands
// out subslices, so this needs no search.
func offsetOf(body, sub []byte) int {
	if cap(sub) > cap(body) {
		return -1
	}
	return cap(body) - cap(sub)
}

// lineAfter returns the 1-based number of the line after the one holding
// offset off: the parser fails on the line after the last entry it returned.
func lineAfter(body []byte, off int) int {
	if off < 0 {
		// Nothing parsed yet: the first non-empty line failed.
		return firstNonEmptyLine(body)
	}
	if off > len(body) {
		off = len(body)
	}
	line := bytes.Count(body[:off], []byte{'\n'}) + 1
	// Skip to the next non-empty line after the last good one.
	rest := body[off:]
	i := bytes.IndexByte(rest, '\n')
	if i < 0 {
		return line
	}
	rest = rest[i+1:]
	line++
	for len(rest) > 0 && rest[0] == '\n' {
		rest = rest[1:]
		line++
	}
	return line
}

func firstNonEmptyLine(body []byte) int {
	line := 1
	for len(body) > 0 && body[0] == '\n' {
		body = body[1:]
		line++
	}
	return line
}

// NewScanner returns the scanner for a payload of the given content type.
func NewScanner(body []byte, contentType string) (Scanner, error) {
	switch mediaType(contentType) {
	case "application/openmetrics-text":
		return newParserScanner(textparse.NewOpenMetricsParser(body, labels.NewSymbolTable()), body), nil
	case "", "text/plain":
		return NewTextScanner(body), nil
	}
	return nil, fmt.Errorf("unsupported content type %q: want text/plain (Prometheus text format 0.0.4) or application/openmetrics-text", contentType)
}

// mediaType is a Content-Type without its parameters. (Not mime.ParseMediaType:
// that allocates, and this runs once per scrape on a header we only compare.)
func mediaType(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.TrimSpace(mt)
}

// IsText reports whether a content type is the text format (0.0.4), which a
// TextScanner reads chunk by chunk; a kubelet sends no other.
func IsText(contentType string) bool {
	mt := mediaType(contentType)
	return mt == "" || mt == "text/plain"
}

func typeName(t commonmodel.MetricType) string {
	switch t {
	case commonmodel.MetricTypeCounter:
		return "counter"
	case commonmodel.MetricTypeGauge:
		return "gauge"
	case commonmodel.MetricTypeHistogram:
		return "histogram"
	case commonmodel.MetricTypeSummary:
		return "summary"
	}
	return "untyped"
}
