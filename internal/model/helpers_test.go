package model

import (
	"strings"
	"testing"

	commonmodel "github.com/prometheus/common/model"
)

func pairs(nameValues ...string) []Label {
	var ls []Label
	for i := 0; i < len(nameValues); i += 2 {
		ls = append(ls, Label{Name: nameValues[i], Value: nameValues[i+1]})
	}
	return ls
}

// FuzzParseLabel: the fast path of parseLabel agrees with the general one.
func FuzzParseLabel(f *testing.F) {
	f.Add(AppendLabel(nil, "__name__", "up"))
	f.Add(AppendLabel(nil, "job", strings.Repeat("x", 200)))
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		n1, v1, size1, ok1 := parseLabel(b)
		n2, v2, size2, ok2 := parseLabelSlow(b)
		if ok1 != ok2 || size1 != size2 || string(n1) != string(n2) || string(v1) != string(v2) {
			t.Fatalf("parseLabel %q %q %d %v, parseLabelSlow %q %q %d %v", n1, v1, size1, ok1, n2, v2, size2, ok2)
		}
	})
}

// FuzzIsValidLabelName: the hand-written check agrees with Prometheus's
// legacy validation, which receivers apply.
func FuzzIsValidLabelName(f *testing.F) {
	for _, s := range []string{"", "_", "a", "A9_", "9a", "a-b", "a.b", "__name__", "é", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := IsValidLabelName(s), commonmodel.LegacyValidation.IsValidLabelName(s); got != want {
			t.Fatalf("IsValidLabelName(%q) = %v, Prometheus says %v", s, got, want)
		}
	})
}

func TestIsValidLabelName(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"team", true}, {"_x", true}, {"x9", true}, {"X_Y", true},
		{"", false}, {"9x", false}, {"a.b", false}, {"a-b", false}, {"é", false}, {"a b", false},
	} {
		if got := IsValidLabelName(tc.in); got != tc.want {
			t.Errorf("IsValidLabelName(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
