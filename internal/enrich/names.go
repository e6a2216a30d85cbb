package enrich

import (
	"sort"
	"strconv"
	"strings"
)

// SanitizeLabelName turns a Kubernetes label or annotation key into a valid
// Prometheus label name: every character outside [a-zA-Z0-9_] becomes '_', and
// a leading digit gets a '_' in front. app.kubernetes.io/team becomes
// app_kubernetes_io_team, as kube-state-metrics does.
func SanitizeLabelName(key string) string {
	var b strings.Builder
	b.Grow(len(key) + 1)
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
			b.WriteByte(c)
		case c >= '0' && c <= '9':
			if i == 0 {
				b.WriteByte('_')
			}
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// Conflict records Kubernetes keys that sanitize to the same label name.
type Conflict struct {
	Name string   // the sanitized name they share
	Keys []string // the original keys in resolution order; Keys[0] kept Name
}

// KeyMapper maps Kubernetes keys (of labels, or of annotations) to label
// names, with an optional prefix, keeping only an allowlist.
type KeyMapper struct {
	Prefix string
	// Allow lists the keys to keep; AllowAll takes every key.
	Allow    map[string]struct{}
	AllowAll bool
}

// Enabled reports whether the mapper keeps anything at all.
func (m KeyMapper) Enabled() bool { return m.AllowAll || len(m.Allow) > 0 }

func (m KeyMapper) keep(k string) bool {
	if m.AllowAll {
		return true
	}
	_, ok := m.Allow[k]
	return ok
}

// NamespaceMapper turns a Namespace's labels and annotations into the labels
// added to its series. Clashes are resolved as kube-state-metrics does, but
// deterministically across both sources: labels before annotations, keys
// sorted within each; the first keeps the name, the others get _conflict1,
// _conflict2, ... so nothing is silently lost and map order never matters.
type NamespaceMapper struct {
	Labels, Annotations KeyMapper
}

// Enabled reports whether any label would ever be added.
func (m NamespaceMapper) Enabled() bool { return m.Labels.Enabled() || m.Annotations.Enabled() }

// Map returns the labels to add, sorted by name, and any clashes found.
func (m NamespaceMapper) Map(labels, annotations map[string]string) ([]Label, []Conflict) {
	type cand struct{ key, name, value string }
	var cands []cand
	for _, src := range []struct {
		m  KeyMapper
		kv map[string]string
	}{{m.Labels, labels}, {m.Annotations, annotations}} {
		if !src.m.Enabled() {
			continue
		}
		start := len(cands)
		for k, v := range src.kv {
			if v != "" && src.m.keep(k) { // an empty value means no label in Prometheus
				cands = append(cands, cand{k, src.m.Prefix + SanitizeLabelName(k), v})
			}
		}
		part := cands[start:]
		sort.Slice(part, func(i, j int) bool { return part[i].key < part[j].key })
	}
	if len(cands) == 0 {
		return nil, nil
	}
	out := make([]Label, 0, len(cands))
	var conflicts []Conflict
	used := make(map[string]int, len(cands))
	for _, c := range cands {
		n := used[c.name]
		used[c.name] = n + 1
		name := c.name
		if n > 0 {
			name += "_conflict" + strconv.Itoa(n)
			idx := -1
			for i := range conflicts {
				if conflicts[i].Name == c.name {
					idx = i
				}
			}
			if idx < 0 {
				for _, c0 := range cands {
					if c0.name == c.name {
						conflicts = append(conflicts, Conflict{Name: c.name, Keys: []string{c0.key}})
						break
					}
				}
				idx = len(conflicts) - 1
			}
			conflicts[idx].Keys = append(conflicts[idx].Keys, c.key)
		}
		out = append(out, Label{Name: name, Value: c.value})
	}
	SortLabels(out)
	return out, conflicts
}

// ParseAllowlist parses a comma-separated list of Kubernetes keys; "*" means all.
func ParseAllowlist(s string) (allow map[string]struct{}, all bool) {
	allow = map[string]struct{}{}
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		switch k {
		case "":
		case "*":
			all = true
		default:
			allow[k] = struct{}{}
		}
	}
	return allow, all
}
