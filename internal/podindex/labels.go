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

// mapLabels returns the pod labels to add, sorted by name, with clash-free
// names. workload and workload_type, when on, keep their names (dashboards
// rely on them) whether the owner resolves or not, so a pod label never
// takes them and later loses them: they are added apart (PodInfo), and the
// pod labels do not depend on the owner. Each pod label, in key order, takes
// its sanitized name (prefix + SanitizeLabelName) if free. The keys left
// over, in key order, get NAME_conflictN with the smallest N whose name is
// not used at all: every name, natural or generated, is checked against every
// name already given, so no two labels can share a name. labels must be
// sorted by key, empty values already dropped.
func (m labelMapper) mapLabels(labels []kv) ([]enrich.Label, []Conflict) {
	n := len(labels)
	if n == 0 {
		return nil, nil
	}
	out := make([]enrich.Label, 0, n)
	used := make(map[string]struct{}, n+2)
	if m.workload {
		used[LabelWorkload], used[LabelWorkloadType] = struct{}{}, struct{}{}
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

// appendWithWorkload appends labels (sorted, without workload and
// workload_type) and, if workloadType is set, workload and workload_type, to
// dst as one sorted set.
func appendWithWorkload(dst, labels []enrich.Label, workload, workloadType string) []enrich.Label {
	if workloadType == "" {
		return append(dst, labels...)
	}
	i := 0
	for i < len(labels) && labels[i].Name < LabelWorkload {
		i++
	}
	dst = append(dst, labels[:i]...)
	dst = append(dst, enrich.Label{Name: LabelWorkload, Value: workload})
	for i < len(labels) && labels[i].Name < LabelWorkloadType {
		dst = append(dst, labels[i])
		i++
	}
	dst = append(dst, enrich.Label{Name: LabelWorkloadType, Value: workloadType})
	return append(dst, labels[i:]...)
}

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
