package enrich

import (
	"math"
	"strconv"

	commonmodel "github.com/prometheus/common/model"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// AppendSeriesText appends the series in text exposition form,
// name{label="value",...}, to dst. Label values are escaped as the format
// requires; a metric or label name outside the legacy character set is
// quoted, as the text format 1.0.0 writes UTF-8 names ({"a.b","c.d"="x"}).
func AppendSeriesText(dst []byte, t *model.LabelTable, ref model.SeriesRef) []byte {
	return AppendSeriesTextEscaped(dst, t, ref, commonmodel.NoEscaping)
}

// AppendSeriesTextEscaped is AppendSeriesText for a reader that asked for
// names escaped (content negotiation's escaping=underscores|dots|values,
// as prometheus/common/expfmt applies them); commonmodel.NoEscaping quotes.
func AppendSeriesTextEscaped(dst []byte, t *model.LabelTable, ref model.SeriesRef, scheme commonmodel.EscapingScheme) []byte {
	quoted := false
	it := t.Labels(ref)
	for it.Next() {
		if string(it.Name) == "__name__" {
			if IsLegacyMetricName(it.Value) {
				dst = append(dst, it.Value...)
			} else if scheme != commonmodel.NoEscaping {
				dst = append(dst, commonmodel.EscapeName(string(it.Value), scheme)...)
			} else {
				dst = append(dst, '{', '"')
				dst = appendEscaped(dst, it.Value)
				dst = append(dst, '"')
				quoted = true
			}
			break
		}
	}
	it = t.Labels(ref)
	first := !quoted
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
		dst = AppendLabelName(dst, it.Name, scheme)
		dst = append(dst, '=', '"')
		dst = appendEscaped(dst, it.Value)
		dst = append(dst, '"')
	}
	if !first {
		dst = append(dst, '}')
	}
	return dst
}

// AppendLabelName writes a label name: as it is if legacy, else quoted
// (NoEscaping) or escaped by scheme.
func AppendLabelName(dst, name []byte, scheme commonmodel.EscapingScheme) []byte {
	switch {
	case isLegacyName(name, false):
		return append(dst, name...)
	case scheme != commonmodel.NoEscaping:
		return append(dst, commonmodel.EscapeName(string(name), scheme)...)
	}
	dst = append(dst, '"')
	dst = appendEscaped(dst, name)
	return append(dst, '"')
}

// AppendMetricName writes a metric name as a HELP or TYPE line needs it:
// as it is if legacy, else quoted (NoEscaping) or escaped by scheme.
func AppendMetricName(dst, name []byte, scheme commonmodel.EscapingScheme) []byte {
	switch {
	case IsLegacyMetricName(name):
		return append(dst, name...)
	case scheme != commonmodel.NoEscaping:
		return append(dst, commonmodel.EscapeName(string(name), scheme)...)
	}
	dst = append(dst, '"')
	dst = appendEscaped(dst, name)
	return append(dst, '"')
}

// IsLegacyMetricName reports whether name needs no quoting in the text
// format: [a-zA-Z_:][a-zA-Z0-9_:]*.
func IsLegacyMetricName(name []byte) bool { return isLegacyName(name, true) }

func isLegacyName(b []byte, colon bool) bool {
	if len(b) == 0 {
		return false
	}
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= '0' && c <= '9' && i > 0 || c == ':' && colon) {
			return false
		}
	}
	return true
}

// AppendSampleLine appends a whole exposition line: series, value and, if
// hasT, the timestamp in milliseconds.
func AppendSampleLine(dst []byte, table *model.LabelTable, ref model.SeriesRef, t int64, v float64, hasT bool) []byte {
	return AppendSampleLineEscaped(dst, table, ref, t, v, hasT, commonmodel.NoEscaping)
}

// AppendSampleLineEscaped is AppendSampleLine with names escaped by scheme.
func AppendSampleLineEscaped(dst []byte, table *model.LabelTable, ref model.SeriesRef, t int64, v float64, hasT bool, scheme commonmodel.EscapingScheme) []byte {
	dst = AppendSeriesTextEscaped(dst, table, ref, scheme)
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
