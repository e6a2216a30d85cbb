package scrape

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	commonmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

// TextScanner reads the Prometheus text format (0.0.4). It is written by hand
// because the hot path only has to find where a series ends and read its
// value and timestamp: a series seen before is recognised by its raw bytes,
// so its labels need no parsing. Only a new series goes through the
// reference parser (model/textparse), one line at a time, which validates
// and unescapes its labels. BenchmarkParse shows the difference.
type TextScanner struct {
	b         []byte
	pos       int
	line      int
	lineStart int
	lineEnd   int // index of the line's '\n'
	series    []byte
	val       float64
	ts        int64
	hasTS     bool
	// predLen and predKey describe the series expected next (its raw length
	// and hash); predicted says the current series was that one.
	predLen   int
	predKey   uint64
	predicted bool
	name      []byte
	text      string
	// final says b holds the rest of the payload; if not, a last line
	// without its newline is left for the next chunk (ErrMore).
	final bool
	// mtype is the type of the last TYPE line, which the reference parser
	// needs to normalize le and quantile values (le="1" -> le="1.0").
	mtype string
}

// NewTextScanner returns a scanner over a whole payload.
func NewTextScanner(b []byte) *TextScanner { return &TextScanner{b: b, final: true} }

// Reset feeds the scanner the next chunk of a payload streamed in pieces;
// final says it holds the rest of the payload. The line count goes on.
func (s *TextScanner) Reset(chunk []byte, final bool) { s.b, s.pos, s.final = chunk, 0, final }

// Unread is the part of the chunk Next has not consumed (after ErrMore: the
// unfinished last line, to carry over into the next chunk).
func (s *TextScanner) Unread() []byte { return s.b[s.pos:] }

// Predict tells the scanner the series expected next: its raw length and the
// xxhash of its raw bytes (0 for none). If the next line starts with it, the
// scanner need not look for where its labels end, and Predicted says so.
func (s *TextScanner) Predict(rawLen int, key uint64) { s.predLen, s.predKey = rawLen, key }

// Predicted reports whether the current series was the one predicted.
func (s *TextScanner) Predicted() bool { return s.predicted }

// ErrMore says the chunk ends inside a line: feed the next one.
var ErrMore = errors.New("scrape: payload continues in the next chunk")

func (s *TextScanner) Line() int { return s.line }

func (s *TextScanner) Series() ([]byte, int64, bool, float64) { return s.series, s.ts, s.hasTS, s.val }

func (s *TextScanner) Meta() ([]byte, string) { return s.name, s.text }

func (s *TextScanner) Next() (EntryKind, error) {
	for s.pos < len(s.b) {
		start := s.pos
		end := bytes.IndexByte(s.b[start:], '\n')
		if end < 0 {
			if !s.final {
				return 0, ErrMore
			}
			end = len(s.b)
		} else {
			end += start
		}
		s.line++
		s.pos = end + 1
		s.lineStart, s.lineEnd = start, end
		line := s.b[start:end]
		for len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			line = line[1:]
		}
		if len(line) == 0 {
			continue
		}
		if line[0] == '#' {
			k, ok, err := s.comment(line)
			if err != nil {
				return 0, err
			}
			if ok {
				return k, nil
			}
			continue
		}
		return EntrySeries, s.sample(line)
	}
	if !s.final {
		return 0, ErrMore
	}
	return 0, io.EOF
}

var errLine = errors.New("malformed line")

func (s *TextScanner) sample(line []byte) error {
	s.predicted = false
	if n := s.predLen; n > 0 && n < len(line) && (line[n] == ' ' || line[n] == '\t') && xxhash.Sum64(line[:n]) == s.predKey {
		// The series the previous scrape had next, byte for byte (its
		// hash and length): no need to find where its labels end.
		s.predicted = true
		return s.valueAndTimestamp(line, n)
	}
	i := 0
	for i < len(line) && metricNameChar[line[i]] {
		i++
	}
	if i < len(line) && line[i] != '{' && line[i] != ' ' && line[i] != '\t' {
		// The reference lexer ends the name here and reads what follows
		// as the value (A+1 2 is A, value +1, timestamp 2): refuse it.
		return fmt.Errorf("unexpected %q after the metric name: %q", line[i], line)
	}
	if i < len(line) && line[i] == '{' {
		rest := line[i+1:]
		off := i + 1
		for {
			q := bytes.IndexByte(rest, '"')
			head := rest
			if q >= 0 {
				head = rest[:q]
			}
			if c := bytes.IndexByte(head, '}'); c >= 0 {
				i = off + c + 1
				break
			}
			if q < 0 {
				return fmt.Errorf("label set not closed with '}': %q", line)
			}
			// Skip the quoted value, minding escaped quotes.
			j := q + 1
			for {
				k := bytes.IndexByte(rest[j:], '"')
				if k < 0 {
					return fmt.Errorf("unterminated quoted label value: %q", line)
				}
				j += k
				bs := 0
				for p := j - 1; p > q && rest[p] == '\\'; p-- {
					bs++
				}
				j++
				if bs%2 == 0 {
					break
				}
			}
			rest = rest[j:]
			off += j
		}
	}
	if i == 0 {
		return fmt.Errorf("expected a metric name: %q", line)
	}
	return s.valueAndTimestamp(line, i)
}

// valueAndTimestamp reads what follows the series, which ends at i.
func (s *TextScanner) valueAndTimestamp(line []byte, i int) error {
	s.series = line[:i]
	// The usual shape, "series value timestamp" with single spaces, in one
	// pass; anything else (tabs, more blanks, errors) takes the general way.
	if j := i + 1; j < len(line) && line[i] == ' ' {
		k := j
		for k < len(line) && line[k] != ' ' && line[k] != '\t' {
			k++
		}
		if k > j && (k == len(line) || (line[k] == ' ' && k+1 < len(line))) {
			if f, err := parseValue(line[j:k]); err == nil {
				if k == len(line) {
					s.val, s.hasTS = f, false
					return nil
				}
				if ts, ok := parseDigits(line[k+1:]); ok {
					s.val, s.ts, s.hasTS = f, ts, true
					return nil
				}
			}
		}
	}
	rest := line[i:]
	v, rest, ok := field(rest)
	if !ok {
		return fmt.Errorf("expected a value after the series: %q", line)
	}
	f, err := parseValue(v)
	if err != nil {
		return fmt.Errorf("invalid value %q: %q", v, line)
	}
	s.val = f
	s.hasTS = false
	t, rest, ok := field(rest)
	if ok {
		ts, ok := parseDigits(t) // digits only, as the reference lexer: no sign
		if !ok {
			return fmt.Errorf("invalid timestamp %q: %q", t, line)
		}
		s.ts, s.hasTS = ts, true
		if _, _, more := field(rest); more {
			return fmt.Errorf("unexpected text after the timestamp: %q", line)
		}
	}
	return nil
}

var metricNameChar = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == ':'
	}
	return t
}()

// field returns the next whitespace-separated token of b.
func field(b []byte) (tok, rest []byte, ok bool) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	j := i
	for j < len(b) && b[j] != ' ' && b[j] != '\t' {
		j++
	}
	return b[i:j], b[j:], j > i
}

// parseDigits parses a non-empty run of decimal digits that fits an int64.
func parseDigits(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		if len(b) > 18 {
			n, err := strconv.ParseInt(unsafe.String(unsafe.SliceData(b), len(b)), 10, 64)
			return n, err == nil && b[0] >= '0' && b[0] <= '9'
		}
		return 0, false
	}
	var n int64
	// Millisecond timestamps have 13 digits: take 8 at a time (SWAR),
	// 10 ns rather than 19 for a timestamp (BenchmarkParseDigits).
	for len(b) >= 8 {
		v, ok := eightDigits(b)
		if !ok {
			return 0, false
		}
		n = n*100000000 + int64(v)
		b = b[8:]
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// eightDigits parses b[:8], ASCII digits, as one number: the
// multiply-and-shift reduction of Lemire's "parse eight digits" (fast_float).
func eightDigits(b []byte) (uint64, bool) {
	v := binary.LittleEndian.Uint64(b)
	if ((v+0x4646464646464646)|(v-0x3030303030303030))&0x8080808080808080 != 0 {
		return 0, false
	}
	v = (v & 0x0F0F0F0F0F0F0F0F) * 2561 >> 8
	v = (v & 0x00FF00FF00FF00FF) * 6553601 >> 16
	return (v & 0x0000FFFF0000FFFF) * 42949672960001 >> 32, true
}

func parseValue(v []byte) (float64, error) {
	// Most cAdvisor values are integers (bytes, counts): those below 2^53
	// convert exactly, with no need for strconv's general parser.
	if len(v) > 0 && len(v) <= 15 {
		neg := v[0] == '-'
		digits := v
		if neg {
			digits = v[1:]
		}
		if n, ok := parseDigits(digits); ok {
			if neg {
				return -float64(n), nil
			}
			return float64(n), nil
		}
	}
	s := unsafe.String(unsafe.SliceData(v), len(v))
	// strconv takes a few spellings the format does not (hex floats with a
	// p exponent, underscores); the reference parser refuses exactly these.
	for _, c := range v {
		if c == 'p' || c == 'P' || c == '_' {
			return 0, errLine
		}
	}
	return strconv.ParseFloat(s, 64)
}

func (s *TextScanner) comment(line []byte) (EntryKind, bool, error) {
	rest := line[1:]
	kw, rest, ok := field(rest)
	if !ok {
		return 0, false, nil
	}
	var k EntryKind
	switch string(kw) {
	case "HELP":
		k = EntryHelp
	case "TYPE":
		k = EntryType
	default:
		return 0, false, nil // a plain comment
	}
	name, rest, ok := field(rest)
	if !ok {
		return 0, false, fmt.Errorf("expected a metric name after %s: %q", kw, line)
	}
	if !commonmodel.LegacyValidation.IsValidMetricName(unsafe.String(unsafe.SliceData(name), len(name))) {
		return 0, false, fmt.Errorf("invalid metric name %q in %s", name, kw)
	}
	s.name = name
	if len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	// As the reference lexer does, exactly one blank separates the name
	// from the text: the rest, as it is, is the TYPE or the HELP.
	if k == EntryType {
		typ := rest
		switch string(typ) {
		case "counter", "gauge", "histogram", "summary", "untyped":
			s.text = typeNames[string(typ)]
			s.mtype = s.text
		default:
			return 0, false, fmt.Errorf("invalid metric type %q", typ)
		}
		return k, true, nil
	}
	if !utf8.Valid(rest) {
		return 0, false, fmt.Errorf("HELP text of %s is not valid UTF-8", name)
	}
	s.text = unescapeHelp(rest)
	return k, true, nil
}

var typeNames = map[string]string{"counter": "counter", "gauge": "gauge", "histogram": "histogram", "summary": "summary", "untyped": "untyped"}

// unescapeHelp returns HELP text; it allocates only when the text changed,
// which the caller checks by comparing against what it holds.
func unescapeHelp(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	var sb strings.Builder
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+1 < len(b) {
			switch b[i+1] {
			case 'n':
				sb.WriteByte('\n')
				i++
				continue
			case '\\':
				sb.WriteByte('\\')
				i++
				continue
			}
		}
		sb.WriteByte(b[i])
	}
	return sb.String()
}

// Labels parses the current line with the reference parser.
func (s *TextScanner) Labels(l *labels.Labels) error {
	line := s.b[s.lineStart : s.lineEnd+1] // with its '\n', which the body always has
	if s.mtype == "histogram" || s.mtype == "summary" {
		// Parsed alone, the line would lose its family's type, and with it
		// the normalization of le and quantile that Prometheus applies when
		// it scrapes the target itself: give the parser the type first.
		line = append([]byte("# TYPE x "+s.mtype+"\n"), line...)
	}
	p := textparse.NewPromParser(line, labels.NewSymbolTable(), false)
	for {
		et, err := p.Next()
		if err != nil {
			if err == io.EOF {
				return fmt.Errorf("no sample in %q", line)
			}
			return err
		}
		if et == textparse.EntrySeries {
			p.Labels(l)
			return nil
		}
	}
}
