package scrape

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unsafe"

	"github.com/cespare/xxhash/v2"
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
	// extraLines counts the newlines inside the current entry's quoted
	// strings; stopped is set once the payload ended early, at a NUL.
	extraLines int
	stopped    bool
	// sb builds the labels of a new series on the fast path (fastLabels).
	sb *labels.ScratchBuilder
	// spans is scanLabels' scratch.
	spans []labelSpan
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

// Stopped reports whether the payload ended early, at a NUL where the
// reference lexer stops reading: what follows is not part of it.
func (s *TextScanner) Stopped() bool { return s.stopped }

// Predicted reports whether the current series was the one predicted.
func (s *TextScanner) Predicted() bool { return s.predicted }

// ErrMore says the chunk ends inside a line: feed the next one.
var ErrMore = errors.New("scrape: payload continues in the next chunk")

func (s *TextScanner) Line() int { return s.line }

func (s *TextScanner) Series() ([]byte, int64, bool, float64) { return s.series, s.ts, s.hasTS, s.val }

func (s *TextScanner) Meta() ([]byte, string) { return s.name, s.text }

func (s *TextScanner) Next() (EntryKind, error) {
	s.line += s.extraLines // the newlines inside the last entry's quoted strings
	s.extraLines = 0
	for s.pos < len(s.b) && !s.stopped {
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
		j := start
		for j < end && (s.b[j] == ' ' || s.b[j] == '\t') {
			j++
		}
		if j == end {
			continue
		}
		switch s.b[j] {
		case 0:
			// The reference lexer reads a NUL at the start of a line as
			// the end of the payload: what follows is ignored.
			s.stopped = true
			return 0, io.EOF
		case '#':
			k, ok, err := s.comment(start, j)
			if err != nil {
				if err == ErrMore {
					s.pos, s.line = start, s.line-1
				}
				return 0, err
			}
			if s.stopped {
				return 0, io.EOF
			}
			if ok {
				return k, nil
			}
			continue
		}
		if err := s.sample(start, j); err != nil {
			if err == ErrMore {
				s.pos, s.line = start, s.line-1
			}
			return 0, err
		}
		return EntrySeries, nil
	}
	if !s.final && !s.stopped {
		return 0, ErrMore
	}
	return 0, io.EOF
}

var errLine = errors.New("malformed line")

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// extend makes the current entry end at the first newline at or after
// from: a quoted string in it held newlines (the reference lexer allows
// them in quoted names and label values).
func (s *TextScanner) extend(from int) error {
	e := bytes.IndexByte(s.b[from:], '\n')
	if e < 0 {
		if !s.final {
			return ErrMore
		}
		e = len(s.b) - from
	}
	s.extraLines = bytes.Count(s.b[s.lineEnd:from], []byte{'\n'})
	s.lineEnd = from + e
	s.pos = s.lineEnd + 1
	return nil
}

// skipQuoted returns the index after the quoted string whose content starts
// at j, as the reference lexer reads "(\\.|[^\\"])*": newlines may be inside,
// not after a backslash. In a label value (value) the lexer does not see
// NUL bytes, so a backslash escapes the first byte after them. It returns -1
// when b ends first, -2 for a backslash before a newline.
func skipQuoted(b []byte, j int, value bool) int {
	for {
		q := bytes.IndexByte(b[j:], '"')
		if q < 0 {
			if bytes.IndexByte(b[j:], '\\') < 0 {
				return -1
			}
			q = len(b) - j
		}
		seg := b[j : j+q]
		bs := bytes.IndexByte(seg, '\\')
		if bs < 0 {
			if j+q == len(b) {
				return -1
			}
			return j + q + 1
		}
		// An escape before the quote: step over it and look again.
		k := j + bs + 1
		if value {
			for k < len(b) && b[k] == 0 {
				k++
			}
		}
		if k >= len(b) {
			return -1
		}
		if b[k] == '\n' {
			return -2
		}
		j = k + 1
	}
}

// sample reads a series line: at is where it starts after blanks.
func (s *TextScanner) sample(start, at int) error {
	s.predicted = false
	line := s.b[at:s.lineEnd]
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
	if i > 0 {
		// As the reference lexer: blanks may come between the name and
		// its labels; anything else after the name is the value (A+1 2 is
		// A, value +1, timestamp 2).
		j := i
		for j < len(line) && isBlank(line[j]) {
			j++
		}
		if j == len(line) || line[j] != '{' {
			return s.valueAndTimestamp(line, i)
		}
		i = j
	}
	if i == len(line) || line[i] != '{' {
		return fmt.Errorf("expected a metric name: %q", line)
	}
	// Find the closing brace, skipping quoted strings, which may hold
	// braces, escaped quotes and even newlines.
	b := s.b
	p := at + i + 1
	lim := s.lineEnd
	for {
		rest := b[p:lim]
		q := bytes.IndexByte(rest, '"')
		head := rest
		if q >= 0 {
			head = rest[:q]
		}
		if c := bytes.IndexByte(head, '}'); c >= 0 {
			p += c + 1
			break
		}
		if q < 0 {
			if lim == len(b) && lim > s.lineEnd && !s.final {
				return ErrMore // the line goes on in the next chunk
			}
			return fmt.Errorf("label set not closed with '}': %q", line)
		}
		// A quoted string after '=' is a label value (see skipQuoted).
		v := p + q - 1
		for v > at && (b[v] == ' ' || b[v] == '\t' || b[v] == 0) {
			v--
		}
		e := skipQuoted(b, p+q+1, b[v] == '=')
		switch {
		case e == -1 && !s.final:
			return ErrMore
		case e < 0:
			return fmt.Errorf("unterminated quoted string: %q", b[at:min(len(b), at+400)])
		}
		p = e
		if p > lim {
			// The string held newlines: the line goes on.
			if nl := bytes.IndexByte(b[p:], '\n'); nl >= 0 {
				lim = p + nl
			} else {
				lim = len(b)
			}
		}
	}
	if p > s.lineEnd {
		if err := s.extend(p); err != nil {
			return err
		}
		line = s.b[at:s.lineEnd]
	}
	return s.valueAndTimestamp(line, p-at)
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

// Labels parses the current series' labels: the common shape by hand
// (fastLabels), any other with the reference parser.
func (s *TextScanner) Labels(l *labels.Labels) error {
	if s.fastLabels(l) {
		return nil
	}
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
