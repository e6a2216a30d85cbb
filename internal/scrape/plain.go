package scrape

import (
	"fmt"
	"net/url"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
)

// DefaultMetricsPathLabel tells apart plain targets on one host:port when
// no other name is given.
const DefaultMetricsPathLabel = "metrics_path"

// PlainTargets turns target URLs into targets whose series cannot collide.
// As in Prometheus, a URL given twice is one target. Targets that share
// job and instance (host:port) but not the path would write the same up,
// scrape_* and often the same payload series, which a receiver refuses as
// out of order or duplicates: each of them gets a pathLabel label holding
// its path. URLs that differ only in their query would still collide and
// are refused.
func PlainTargets(urls []string, job, pathLabel string) ([]*Target, error) {
	if pathLabel == "" {
		pathLabel = DefaultMetricsPathLabel
	}
	var out []*Target
	seen := map[string]bool{}
	byInstance := map[string][]*Target{}
	for _, raw := range urls {
		t, err := PlainTarget(raw, job)
		if err != nil {
			return nil, err
		}
		if seen[t.Key] {
			continue
		}
		seen[t.Key] = true
		out = append(out, t)
		byInstance[t.Address] = append(byInstance[t.Address], t)
	}
	for _, ts := range byInstance {
		if len(ts) < 2 {
			continue
		}
		paths := map[string]string{}
		for _, t := range ts {
			path := t.path()
			if other, ok := paths[path]; ok {
				return nil, fmt.Errorf("%q and %q: same host:port and path, their series would be identical; give one of them", other, t.URL)
			}
			paths[path] = t.URL
			t.Path = path
			t.Labels = append(t.Labels, enrich.Label{Name: pathLabel, Value: path})
			enrich.SortLabels(t.Labels)
		}
	}
	return out, nil
}

// path is the URL's path, "/" if it has none.
func (t *Target) path() string {
	u, err := url.Parse(t.URL)
	if err != nil || u.EscapedPath() == "" {
		return "/"
	}
	return u.EscapedPath()
}
