package modeltest_test

import (
	"slices"
	"testing"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model/modeltest"
)

func pairs(nameValues ...string) []model.Label {
	var ls []model.Label
	for i := 0; i < len(nameValues); i += 2 {
		ls = append(ls, model.Label{Name: nameValues[i], Value: nameValues[i+1]})
	}
	return ls
}

func labelsOf(t testing.TB, tab *model.LabelTable, ref model.SeriesRef) []model.Label {
	t.Helper()
	var out []model.Label
	it := tab.Labels(ref)
	for it.Next() {
		out = append(out, model.Label{Name: string(it.Name), Value: string(it.Value)})
	}
	if it.Err() {
		t.Fatalf("malformed labels in table %d ref %+v", tab.ID, ref)
	}
	return out
}

// TestInternValidity: the interner's validity mark agrees with ValidateSeries,
// written apart from it, on every rule receivers enforce.
func TestInternValidity(t *testing.T) {
	in := model.NewLabelInterner(1)
	for _, tc := range []struct {
		name  string
		ls    []model.Label
		valid bool
	}{
		{"ok", pairs("__name__", "up", "job", "a"), true},
		{"only __name__", pairs("__name__", "up"), true},
		{"upper case sorts before __name__", pairs("AAA", "x", "__name__", "up", "job", "a"), true},
		{"value with any bytes", pairs("__name__", "up", "path", "/a b/\"c\"\n\u00e9"), true},
		{"empty", nil, false},
		{"unsorted", pairs("job", "a", "__name__", "up"), false},
		{"duplicate", pairs("__name__", "up", "job", "a", "job", "b"), false},
		{"same label twice", pairs("__name__", "up", "job", "a", "job", "a"), false},
		{"empty value", pairs("__name__", "up", "job", ""), false},
		{"empty __name__", pairs("__name__", "", "job", "a"), false},
		{"empty name", pairs("", "x", "__name__", "up"), false},
		{"name not UTF-8", pairs("__name__", "up", "bad\xffname", "x"), false},
		{"empty name", pairs("", "x", "__name__", "up"), false},
		// Prometheus 3 receivers take any UTF-8 name (model.UTF8Validation).
		{"UTF-8 name", pairs("__name__", "up", "bad-name", "x"), true},
		{"name starting with a digit", pairs("0a", "x", "__name__", "up"), true},
		{"no __name__", pairs("job", "a"), false},
	} {
		ref := in.Intern(tc.ls)
		tab := in.Table()
		if ref.Valid() != tc.valid {
			t.Errorf("%s: Valid() = %v", tc.name, ref.Valid())
		}
		if (modeltest.ValidateSeries(tab, ref) == nil) != tc.valid {
			t.Errorf("%s: ValidateSeries = %v", tc.name, modeltest.ValidateSeries(tab, ref))
		}
		// Invalid or not, the labels are kept as given.
		if got := labelsOf(t, tab, ref); !slices.Equal(got, tc.ls) {
			t.Errorf("%s: labels %v, want %v", tc.name, got, tc.ls)
		}
		if again := in.Intern(tc.ls); again != ref {
			t.Errorf("%s: interned again as %+v, was %+v", tc.name, again, ref)
		}
	}
	// An invalid set and the valid set with the same symbols differ.
	bad, good := in.Intern(pairs("job", "a", "__name__", "up")), in.Intern(pairs("__name__", "up", "job", "a"))
	if bad == good {
		t.Fatal("invalid and valid sets share a ref")
	}
}
