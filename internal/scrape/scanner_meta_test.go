package scrape

import (
	"io"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

// Metadata lines the reference parser refuses must fail here too, or a
// payload would pass the relay and fail Prometheus.
func TestMetadataLinesMatchReference(t *testing.T) {
	for _, line := range []string{
		"# TYPE m  counter\n",
		"# TYPE m counter \n",
		"# TYPE m\tcounter\n",
		"# TYPE m counter\n",
		"# HELP m \xff\xfe\n",
		"# HELP m  two spaces kept\n",
		"# HELP m esc \\\\ and \\n\n",
		"# TYPE m bogus\n",
	} {
		body := []byte(line + "m 1\n")
		ref := textparse.NewPromParser(body, labels.NewSymbolTable(), false)
		var refErr error
		for {
			if _, err := ref.Next(); err != nil {
				if err != io.EOF {
					refErr = err
				}
				break
			}
		}
		sc := NewTextScanner(body)
		var err error
		for {
			if _, err = sc.Next(); err != nil {
				if err == io.EOF {
					err = nil
				}
				break
			}
		}
		if (err == nil) != (refErr == nil) {
			t.Errorf("%q: scanner err %v, reference err %v", line, err, refErr)
		}
	}
}
