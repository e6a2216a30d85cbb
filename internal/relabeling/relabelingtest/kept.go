// Package relabelingtest is the reference model the relay's metric relabeling
// is tested against: what Prometheus itself keeps of a payload.
package relabelingtest

import (
	"errors"
	"fmt"
	"io"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/model/textparse"
)

// KeptSeries returns the series Prometheus keeps of a text-format payload
// after cfgs, each as its label string, and how many distinct series the
// payload had. It uses Prometheus's own parser, not the relay's; target
// labels are added as honor_labels: true adds them (a series' own label
// wins), and of duplicate series the first is kept, as Prometheus does.
func KeptSeries(body []byte, target labels.Labels, cfgs []*relabel.Config) (kept map[string]bool, total int, err error) {
	p := textparse.NewPromParser(body, labels.NewSymbolTable(), false)
	kept, seen := map[string]bool{}, map[string]bool{}
	for {
		et, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("reference parser: %w", err)
		}
		if et != textparse.EntrySeries {
			continue
		}
		var ls labels.Labels
		p.Labels(&ls)
		key := ls.String()
		if seen[key] {
			continue
		}
		seen[key] = true
		lb := labels.NewBuilder(ls)
		target.Range(func(l labels.Label) {
			if !ls.Has(l.Name) {
				lb.Set(l.Name, l.Value)
			}
		})
		if relabel.ProcessBuilder(lb, cfgs...) {
			kept[lb.Labels().String()] = true
		}
	}
	return kept, len(seen), nil
}
