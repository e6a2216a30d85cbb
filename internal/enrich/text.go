package enrich

import (
	"math"
	"strconv"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// AppendSeriesText appends the series in text exposition form,
// name{label="value",...}, to dst. Label values are escaped as the format
// requires; names are already valid.
func AppendSeriesText(dst []byte, t *model.LabelTable, ref model.SeriesRef) []byte {
	it := t.Labels(ref)
	for it.Next() {
		if string(it.Name) == "__name__" {
			dst = append(dst, it.Value...)
			break
		}
	}
	it = t.Labels(ref)
	first := true
	for it.Next() {
		if string(it.Name) == "__name__" {
			continue
		}
		if first {
			dst = append(dst, '{')
			first = false
		} else {
			dst = append(dst, ',')
		}
		dst = append(dst, it.Name...)
		dst = append(dst, '=', '"')
		dst = appendEscaped(dst, it.Value)
		dst = append(dst, '"')
	}
	if !first {
		dst = append(dst, '}')
	}
	return dst
}

// AppendSampleLine appends a whole exposition line: series, value and, if
// hasT, the timestamp in milliseconds.
func AppendSampleLine(dst []byte, table *model.LabelTable, ref model.SeriesRef, t int64, v float64, hasT bool) []byte {
	dst = AppendSeriesText(dst, table, ref)
	dst = append(dst, ' ')
	dst = AppendFloat(dst, v)
	if hasT {
		dst = append(dst, ' ')
		dst = strconv.AppendInt(dst, t, 10)
	}
	return append(dst, '\n')
}

// AppendFloat writes v as the text format spells it (NaN, +Inf, -Inf).
func AppendFloat(dst []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(dst, "NaN"...)
	case math.IsInf(v, 1):
		return append(dst, "+Inf"...)
	case math.IsInf(v, -1):
		return append(dst, "-Inf"...)
	}
	return strconv.AppendFloat(dst, v, 'g', -1, 64)
}

// needsEscape marks the bytes a label value escapes.
var needsEscape = [256]bool{'\\': true, '"': true, '\n': true}

// appendEscaped copies runs of plain bytes in one go: almost every label
// value is one run.
func appendEscaped(dst, v []byte) []byte {
	start := 0
	for i, c := range v {
		if !needsEscape[c] {
			continue
		}
		dst = append(dst, v[start:i]...)
		switch c {
		case '\\':
			dst = append(dst, '\\', '\\')
		case '"':
			dst = append(dst, '\\', '"')
		case '\n':
			dst = append(dst, '\\', 'n')
		}
		start = i + 1
	}
	return append(dst, v[start:]...)
}

// AppendEscapedHelp escapes HELP text (backslash and newline only).
func AppendEscapedHelp(dst, v []byte) []byte {
	for _, c := range v {
		switch c {
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\n':
			dst = append(dst, '\\', 'n')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
