package model

import "unicode/utf8"

// IsValidLabelName reports whether name is a legacy (ASCII) Prometheus label
// name, [a-zA-Z_][a-zA-Z0-9_]*: the form every receiver accepts, and the only
// one the relay emits. (Hand-written, as prometheus/common/model's would pull
// that module into this leaf package.)
func IsValidLabelName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}

// validLabels checks ls against the rules receivers enforce.
func validLabels(ls []Label) bool {
	hasName := false
	for i, l := range ls {
		if l.Value == "" || !IsValidSeriesLabelName(l.Name) {
			return false
		}
		if i > 0 && ls[i-1].Name >= l.Name {
			return false
		}
		if l.Name == "__name__" {
			hasName = true
		}
	}
	return hasName
}

// IsValidSeriesLabelName is the check receivers apply to the label names of
// series they are sent: Prometheus 3's remote-write handler, like its scrape,
// takes any non-empty UTF-8 name (model.UTF8Validation in prometheus/common).
func IsValidSeriesLabelName(name string) bool {
	// Names are short and almost always ASCII: this loop, inlined, takes
	// less than utf8.ValidString's call (BenchmarkIntern).
	for i := 0; i < len(name); i++ {
		if name[i] >= utf8.RuneSelf {
			return utf8.ValidString(name)
		}
	}
	return name != ""
}
