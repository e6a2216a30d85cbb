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
// _conflict2, ... (skipping every name another key already has) so nothing
// is silently lost, no name is emitted twice, and map order never matters.
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
	// First every key whose sanitized name is still free takes it (in the
	// order above); then each loser gets the lowest _conflictN that no key and
	// no earlier loser uses, so that no two labels ever share a name (keys a.b,
	// a_b and a_b_conflict1 map to a_b, a_b_conflict2 and a_b_conflict1).
	names := make([]string, len(cands))
	taken := make(map[string]bool, len(cands))
	for i, c := range cands {
		if !taken[c.name] {
			taken[c.name] = true
			names[i] = c.name
		}
	}
	var conflicts []Conflict
	var conflictOf, lastSuffix map[string]int
	for i, c := range cands {
		if names[i] != "" {
			continue
		}
		if conflictOf == nil {
			conflictOf, lastSuffix = map[string]int{}, map[string]int{}
		}
		n, name := lastSuffix[c.name], ""
		for {
			n++
			if name = c.name + "_conflict" + strconv.Itoa(n); !taken[name] {
				break
			}
		}
		lastSuffix[c.name] = n
		taken[name] = true
		names[i] = name
		idx, ok := conflictOf[c.name]
		if !ok {
			for j := range cands {
				if names[j] == c.name { // the key that kept the name
					conflicts = append(conflicts, Conflict{Name: c.name, Keys: []string{cands[j].key}})
					break
				}
			}
			idx = len(conflicts) - 1
			conflictOf[c.name] = idx
		}
		conflicts[idx].Keys = append(conflicts[idx].Keys, c.key)
	}
	out := make([]Label, len(cands))
	for i, c := range cands {
		out[i] = Label{Name: names[i], Value: c.value}
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
