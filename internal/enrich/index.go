package enrich

import (
	"slices"
	"strings"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// Label is one name/value pair to add to a series.
type Label = model.Label

// SortLabels sorts ls by name, in place. (slices.SortFunc, unlike
// sort.Slice, allocates nothing: it runs for every new series.)
func SortLabels(ls []Label) {
	slices.SortFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
}

// NamespaceInfo is what the index knows of one namespace.
type NamespaceInfo struct {
	// Labels are added to every series of the namespace, sorted by name.
	Labels []Label
	// Version changes whenever Labels change, and only then, so that a scrape
	// cache can tell whether a series built earlier is still right without
	// comparing label sets.
	Version uint64
}

// NamespaceIndex is an immutable snapshot: namespace name -> labels to add.
// A nil *NamespaceIndex is valid and knows no namespace.
type NamespaceIndex struct {
	generation uint64
	namespaces map[string]NamespaceInfo
}

// NewNamespaceIndex wraps m, which the caller must not modify afterwards.
// generation must grow with every new snapshot.
func NewNamespaceIndex(generation uint64, m map[string]NamespaceInfo) *NamespaceIndex {
	return &NamespaceIndex{generation: generation, namespaces: m}
}

// Generation identifies the snapshot; it grows with every change.
func (ix *NamespaceIndex) Generation() uint64 {
	if ix == nil {
		return 0
	}
	return ix.generation
}

// Lookup returns what the index knows of namespace ns.
func (ix *NamespaceIndex) Lookup(ns string) (NamespaceInfo, bool) {
	if ix == nil {
		return NamespaceInfo{}, false
	}
	info, ok := ix.namespaces[ns]
	return info, ok
}

// Len is the number of namespaces in the snapshot.
func (ix *NamespaceIndex) Len() int {
	if ix == nil {
		return 0
	}
	return len(ix.namespaces)
}
