// Package modeltest holds checks on the data model for the tests of the
// packages that produce series.
package modeltest

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// ValidateSeries checks that a series follows the rules every receiver
// enforces: well-formed encoding, labels sorted by name without duplicates,
// valid (UTF-8) names, no empty values, and a __name__ label. It is written
// apart from the interner's own check so that each is the other's oracle.
func ValidateSeries(t *model.LabelTable, ref model.SeriesRef) error {
	var prev []byte
	hasName := false
	it := t.Labels(ref)
	for it.Next() {
		name, value := it.Name, it.Value
		switch {
		case !model.IsValidSeriesLabelName(string(name)):
			return fmt.Errorf("invalid label name %q", name)
		case len(value) == 0:
			return fmt.Errorf("label %q has an empty value", name)
		case prev != nil && bytes.Equal(prev, name):
			return fmt.Errorf("duplicate label %q", name)
		case prev != nil && bytes.Compare(prev, name) > 0:
			return fmt.Errorf("label %q after %q: labels not sorted by name", name, prev)
		}
		if string(name) == "__name__" {
			hasName = true
		}
		prev = name
	}
	if it.Err() {
		return errors.New("malformed label encoding")
	}
	if !hasName {
		return errors.New("no __name__ label")
	}
	return nil
}
