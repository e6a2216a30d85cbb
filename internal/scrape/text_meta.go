package scrape

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// The comment lines of the text format (HELP, TYPE, plain comments), read
// as the reference lexer reads them; the series lines are in text.go.

// comment reads a line that starts with '#' at j, as the reference lexer
// does: "#" and a blank start a comment that may be HELP or TYPE; "#"
// without one is a plain comment. A NUL where the lexer sees one in a
// comment ends the payload, as there.
func (s *TextScanner) comment(start, j int) (EntryKind, bool, error) {
	line := s.b[j:s.lineEnd]
	if len(line) == 1 || !isBlank(line[1]) {
		if bytes.IndexByte(line, 0) >= 0 {
			s.stopped = true
		}
		return 0, false, nil
	}
	k := 1
	for k < len(line) && isBlank(line[k]) {
		k++
	}
	if k < len(line) && line[k] == 0 {
		s.stopped = true
		return 0, false, nil
	}
	// In a comment the lexer does not see NULs: "HE\x00LP" is HELP.
	next := func() byte {
		for k < len(line) && line[k] == 0 {
			k++
		}
		if k == len(line) {
			return '\n'
		}
		return line[k]
	}
	var kind EntryKind
	switch next() {
	case 'H':
		kind = EntryHelp
	case 'T':
		kind = EntryType
	default:
		return 0, false, nil
	}
	word := "HELP"
	if kind == EntryType {
		word = "TYPE"
	}
	for i := 0; i < 4; i++ {
		if next() != word[i] {
			return 0, false, nil
		}
		k++
	}
	if !isBlank(next()) {
		return 0, false, nil
	}
	for c := next(); isBlank(c); c = next() {
		k++
	}
	// The family name: quoted (any text, newlines too) or [a-zA-Z_:][a-zA-Z0-9_:]*.
	var name []byte
	var e int // end of the name in s.b
	switch {
	case k < len(line) && line[k] == '"':
		end := skipQuoted(s.b, j+k+1, false)
		switch {
		case end == -1 && !s.final:
			return 0, false, ErrMore
		case end < 0:
			return 0, false, fmt.Errorf("unterminated quoted metric name after %s: %q", word, line)
		}
		name = s.b[j+k+1 : end-1]
		if end > s.lineEnd {
			if err := s.extend(end); err != nil {
				return 0, false, err
			}
		}
		e = end
		if bytes.IndexByte(name, '\\') >= 0 {
			name = []byte(lvalReplacer.Replace(string(name)))
		}
	case k < len(line) && metricNameChar[line[k]] && (line[k] < '0' || line[k] > '9'):
		n := k
		for n < len(line) && metricNameChar[line[n]] {
			n++
		}
		name = line[k:n]
		e = j + n
	default:
		return 0, false, fmt.Errorf("expected a metric name after %s: %q", word, line)
	}
	s.name = name
	// The rest of the line less its first byte is the text, unless the
	// rest is only blanks (and NULs, which the lexer skips after a blank).
	rest := s.b[e:s.lineEnd]
	if len(rest) > 0 && rest[0] == 0 {
		// The lexer's text token cannot start with a NUL; the NUL then
		// reads as the end of the payload, before the line ended.
		return 0, false, fmt.Errorf("NUL after the metric name in %s: %q", word, line)
	}
	if len(rest) > 0 && isBlank(rest[0]) && allBlankOrNUL(rest) {
		rest = rest[:0]
	} else if len(rest) > 0 {
		rest = rest[1:]
	}
	if kind == EntryType {
		switch string(rest) {
		case "counter", "gauge", "histogram", "summary", "untyped":
			s.text = typeNames[string(rest)]
			s.mtype = s.text
		default:
			return 0, false, fmt.Errorf("invalid metric type %q", rest)
		}
		return kind, true, nil
	}
	if !utf8.Valid(rest) {
		return 0, false, fmt.Errorf("HELP text of %s is not valid UTF-8", name)
	}
	s.text = unescapeHelp(rest)
	return kind, true, nil
}

func allBlankOrNUL(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != 0 {
			return false
		}
	}
	return true
}

// lvalReplacer unescapes a quoted name as the reference parser does.
var lvalReplacer = strings.NewReplacer(`\"`, "\"", `\\`, "\\", `\n`, "\n")

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
