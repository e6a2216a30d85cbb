package enrich

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

func TestSanitizeLabelName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"team", "team"},
		{"app.kubernetes.io/team", "app_kubernetes_io_team"},
		{"cost-center", "cost_center"},
		{"Team_A9", "Team_A9"},
		{"9team", "_9team"},
		{"0", "_0"},
		{"a9", "a9"},
		{"équipe", "__quipe"}, // é is two bytes: each becomes '_'
		{"チーム", "_________"},
		{"", "_"},
		{"/", "_"},
		{"_", "_"},
	} {
		got := SanitizeLabelName(tc.in)
		if got != tc.want {
			t.Errorf("SanitizeLabelName(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !model.IsValidLabelName(got) {
			t.Errorf("SanitizeLabelName(%q) = %q is not a valid label name", tc.in, got)
		}
	}
}

func TestParseAllowlist(t *testing.T) {
	for _, tc := range []struct {
		in    string
		allow []string
		all   bool
	}{
		{"", nil, false},
		{"team", []string{"team"}, false},
		{" team , cost-center ,,", []string{"cost-center", "team"}, false},
		{"*", nil, true},
		{"team,*", []string{"team"}, true},
	} {
		allow, all := ParseAllowlist(tc.in)
		var got []string
		for k := range allow {
			got = append(got, k)
		}
		sortStrings(got)
		if all != tc.all || !reflect.DeepEqual(got, tc.allow) {
			t.Errorf("ParseAllowlist(%q) = %v, %v; want %v, %v", tc.in, got, all, tc.allow, tc.all)
		}
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func allow(keys ...string) map[string]struct{} {
	m := map[string]struct{}{}
	for _, k := range keys {
		m[k] = struct{}{}
	}
	return m
}

func TestNamespaceMapper(t *testing.T) {
	for _, tc := range []struct {
		name         string
		m            NamespaceMapper
		labels, anns map[string]string
		want         []Label
		conflicts    []Conflict
	}{
		{
			name:   "allowlist keeps only the listed keys",
			m:      NamespaceMapper{Labels: KeyMapper{Allow: allow("team")}},
			labels: map[string]string{"team": "frontend", "kubernetes.io/metadata.name": "web", "other": "x"},
			want:   []Label{{Name: "team", Value: "frontend"}},
		},
		{
			name:   "star takes every label, sanitized",
			m:      NamespaceMapper{Labels: KeyMapper{AllowAll: true}},
			labels: map[string]string{"team": "frontend", "kubernetes.io/metadata.name": "web"},
			want:   []Label{{Name: "kubernetes_io_metadata_name", Value: "web"}, {Name: "team", Value: "frontend"}},
		},
		{
			name:   "prefix",
			m:      NamespaceMapper{Labels: KeyMapper{Prefix: "namespace_", Allow: allow("team", "app.kubernetes.io/part-of")}},
			labels: map[string]string{"team": "frontend", "app.kubernetes.io/part-of": "shop"},
			want:   []Label{{Name: "namespace_app_kubernetes_io_part_of", Value: "shop"}, {Name: "namespace_team", Value: "frontend"}},
		},
		{
			name:   "empty values are dropped",
			m:      NamespaceMapper{Labels: KeyMapper{AllowAll: true}, Annotations: KeyMapper{AllowAll: true}},
			labels: map[string]string{"team": "", "tier": "web"},
			anns:   map[string]string{"owner": ""},
			want:   []Label{{Name: "tier", Value: "web"}},
		},
		{
			name: "annotations disabled are ignored",
			m:    NamespaceMapper{Labels: KeyMapper{Allow: allow("team")}},
			anns: map[string]string{"team": "ignored"},
			want: nil,
		},
		{
			name:   "nothing enabled",
			m:      NamespaceMapper{},
			labels: map[string]string{"team": "frontend"},
			want:   nil,
		},
		{
			name:   "conflicts: labels before annotations, keys sorted within each",
			m:      NamespaceMapper{Labels: KeyMapper{AllowAll: true}, Annotations: KeyMapper{AllowAll: true}},
			labels: map[string]string{"team": "l-team", "te.am": "l-te.am", "te-am": "l-te-am", "te/am": "l-te/am"},
			anns:   map[string]string{"team": "a-team", "te_am": "a-te_am", "a.b": "a-a.b"},
			// sanitized: te-am, te.am, te/am -> te_am (labels sorted: te-am < te.am < te/am), then annotation te_am.
			want: []Label{
				{Name: "a_b", Value: "a-a.b"},
				{Name: "te_am", Value: "l-te-am"},
				{Name: "te_am_conflict1", Value: "l-te.am"},
				{Name: "te_am_conflict2", Value: "l-te/am"},
				{Name: "te_am_conflict3", Value: "a-te_am"},
				{Name: "team", Value: "l-team"},
				{Name: "team_conflict1", Value: "a-team"},
			},
			conflicts: []Conflict{
				{Name: "te_am", Keys: []string{"te-am", "te.am", "te/am", "te_am"}},
				{Name: "team", Keys: []string{"team", "team"}},
			},
		},
		{
			name:   "a generated name never takes a name another key has (issue 10)",
			m:      NamespaceMapper{Labels: KeyMapper{AllowAll: true}},
			labels: map[string]string{"a.b": "1", "a_b": "2", "a_b_conflict1": "3"},
			want: []Label{
				{Name: "a_b", Value: "1"},
				{Name: "a_b_conflict1", Value: "3"},
				{Name: "a_b_conflict2", Value: "2"},
			},
			conflicts: []Conflict{{Name: "a_b", Keys: []string{"a.b", "a_b"}}},
		},
		{
			name:   "a generated name skips names of later keys and of annotations",
			m:      NamespaceMapper{Labels: KeyMapper{AllowAll: true}, Annotations: KeyMapper{AllowAll: true}},
			labels: map[string]string{"x-y": "l1", "x.y": "l2", "x/y": "l3"},
			anns:   map[string]string{"x_y_conflict1": "a1", "x_y_conflict3": "a3"},
			want: []Label{
				{Name: "x_y", Value: "l1"},
				{Name: "x_y_conflict1", Value: "a1"},
				{Name: "x_y_conflict2", Value: "l2"},
				{Name: "x_y_conflict3", Value: "a3"},
				{Name: "x_y_conflict4", Value: "l3"},
			},
			conflicts: []Conflict{{Name: "x_y", Keys: []string{"x-y", "x.y", "x/y"}}},
		},
		{
			name:   "a key sanitizing to a generated name of a clash of its own",
			m:      NamespaceMapper{Labels: KeyMapper{AllowAll: true}},
			labels: map[string]string{"a.b": "1", "a_b": "2", "a_b.conflict1": "3", "a_b_conflict1": "4"},
			want: []Label{
				{Name: "a_b", Value: "1"},
				{Name: "a_b_conflict1", Value: "3"},
				{Name: "a_b_conflict1_conflict1", Value: "4"},
				{Name: "a_b_conflict2", Value: "2"},
			},
			conflicts: []Conflict{
				{Name: "a_b", Keys: []string{"a.b", "a_b"}},
				{Name: "a_b_conflict1", Keys: []string{"a_b.conflict1", "a_b_conflict1"}},
			},
		},
		{
			name:   "prefixed names clash after the prefix",
			m:      NamespaceMapper{Labels: KeyMapper{Prefix: "ns_", AllowAll: true}},
			labels: map[string]string{"a.b": "1", "a_b": "2", "a_b_conflict1": "3"},
			want: []Label{
				{Name: "ns_a_b", Value: "1"},
				{Name: "ns_a_b_conflict1", Value: "3"},
				{Name: "ns_a_b_conflict2", Value: "2"},
			},
			conflicts: []Conflict{{Name: "ns_a_b", Keys: []string{"a.b", "a_b"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Map iteration order is random: the result must not depend on it.
			first, firstC := tc.m.Map(tc.labels, tc.anns)
			for i := 0; i < 200; i++ {
				got, gotC := tc.m.Map(copyMap(tc.labels), copyMap(tc.anns))
				if !reflect.DeepEqual(got, first) || !reflect.DeepEqual(gotC, firstC) {
					t.Fatalf("run %d differs: %v %v vs %v %v", i, got, gotC, first, firstC)
				}
			}
			if !reflect.DeepEqual(first, tc.want) {
				t.Errorf("labels = %v, want %v", first, tc.want)
			}
			if len(tc.conflicts) > 0 || len(firstC) > 0 {
				sortConflicts(firstC)
				if !reflect.DeepEqual(firstC, tc.conflicts) {
					t.Errorf("conflicts = %v, want %v", firstC, tc.conflicts)
				}
			}
			for i := range first {
				if !model.IsValidLabelName(first[i].Name) || first[i].Value == "" {
					t.Errorf("invalid label %v", first[i])
				}
				if i > 0 && first[i-1].Name >= first[i].Name {
					t.Errorf("labels not sorted and unique: %v", first)
				}
			}
		})
	}
}

func sortConflicts(cs []Conflict) {
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && strings.Compare(cs[j].Name, cs[j-1].Name) < 0; j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestNamespaceIndexNil(t *testing.T) {
	var ix *NamespaceIndex
	if ix.Generation() != 0 || ix.Len() != 0 {
		t.Fatal("nil index must be empty")
	}
	if _, ok := ix.Lookup("x"); ok {
		t.Fatal("nil index knows a namespace")
	}
	ix = NewNamespaceIndex(3, map[string]NamespaceInfo{"web": {Labels: []Label{{Name: "team", Value: "frontend"}}, Version: 2}})
	if info, ok := ix.Lookup("web"); !ok || info.Version != 2 || ix.Generation() != 3 || ix.Len() != 1 {
		t.Fatalf("lookup = %v %v", info, ok)
	}
}
