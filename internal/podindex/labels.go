package podindex

import (
	"slices"
	"strconv"
	"strings"
	"unique"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
)

// Label names the index adds for a pod's workload.
const (
	LabelWorkload     = "workload"
	LabelWorkloadType = "workload_type"
)

// kv is one allowlisted pod label as Kubernetes has it.
type kv struct{ key, value string }

// Conflict records pod label keys that map to a label name already taken.
type Conflict struct {
	Name string   // the name they would have had
	Keys []string // the keys renamed, in key order
}

// labelMapper turns a pod's allowlisted labels and workload into the labels
// added to its series.
type labelMapper struct {
	keys     enrich.KeyMapper
	workload bool
}

func (m labelMapper) keep(k string) bool {
	if m.keys.AllowAll {
		return true
	}
	_, ok := m.keys.Allow[k]
	return ok
}

// intern returns the canonical copy of s: label names, namespaces, nodes and
// owner kinds repeat across thousands of pods. unique's handles are weak, so
// names no pod uses any more are collected.
func intern(s string) string { return unique.Make(s).Value() }

// mapLabels returns the labels to add, sorted by name, with clash-free
// names. workload and workload_type, when on, keep their names (dashboards
// rely on them) even while the owner is unresolved, so a pod label never
// takes them and later loses them. Then each pod label, in key order, takes
// its sanitized name (prefix + SanitizeLabelName) if free. The keys left
// over, in key order, get NAME_conflictN with the smallest N whose name is
// not used at all: every name, natural or generated, is checked against every
// name already given, so no two labels can share a name. labels must be
// sorted by key, empty values already dropped.
func (m labelMapper) mapLabels(labels []kv, workload, workloadType string, resolved bool) ([]enrich.Label, []Conflict) {
	n := len(labels)
	if m.workload && resolved {
		n += 2
	}
	if n == 0 {
		return nil, nil
	}
	out := make([]enrich.Label, 0, n)
	used := make(map[string]struct{}, n+2)
	if m.workload {
		used[LabelWorkload], used[LabelWorkloadType] = struct{}{}, struct{}{}
		if resolved {
			out = append(out, enrich.Label{Name: LabelWorkload, Value: workload}, enrich.Label{Name: LabelWorkloadType, Value: workloadType})
		}
	}
	var leftover []int
	names := make([]string, len(labels))
	for i, l := range labels {
		name := m.keys.Prefix + enrich.SanitizeLabelName(l.key)
		names[i] = name
		if _, taken := used[name]; taken {
			leftover = append(leftover, i)
			continue
		}
		used[name] = struct{}{}
		out = append(out, enrich.Label{Name: intern(name), Value: labels[i].value})
	}
	var conflicts []Conflict
	for _, i := range leftover {
		base := names[i]
		var name string
		for k := 1; ; k++ {
			name = base + "_conflict" + strconv.Itoa(k)
			if _, taken := used[name]; !taken {
				break
			}
		}
		used[name] = struct{}{}
		out = append(out, enrich.Label{Name: intern(name), Value: labels[i].value})
		if j := slices.IndexFunc(conflicts, func(c Conflict) bool { return c.Name == base }); j >= 0 {
			conflicts[j].Keys = append(conflicts[j].Keys, labels[i].key)
		} else {
			conflicts = append(conflicts, Conflict{Name: base, Keys: []string{labels[i].key}})
		}
	}
	enrich.SortLabels(out)
	return out, conflicts
}

func sameLabels(a, b []enrich.Label) bool { return slices.Equal(a, b) }

func conflictKey(cs []Conflict) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(c.Name)
		b.WriteByte('=')
		b.WriteString(strings.Join(c.Keys, ","))
		b.WriteByte(';')
	}
	return b.String()
}
