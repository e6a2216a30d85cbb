package podindex

import (
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

func TestMapLabelsClashFree(t *testing.T) {
	cases := []struct {
		name      string
		mapper    labelMapper
		labels    map[string]string
		w, wt     string
		resolved  bool
		want      []enrich.Label
		conflicts []Conflict
	}{
		{
			name:   "sanitized, sorted, empty values dropped",
			mapper: labelMapper{keys: enrich.KeyMapper{AllowAll: true}},
			labels: map[string]string{"app.kubernetes.io/name": "web", "9lives": "x", "empty": ""},
			want:   []enrich.Label{{Name: "_9lives", Value: "x"}, {Name: "app_kubernetes_io_name", Value: "web"}},
		},
		{
			// "a.b" < "a_b" < "a_b_conflict1" by key: a.b takes a_b, the key
			// a_b_conflict1 keeps its own name, so a_b must skip to _conflict2.
			name:      "a generated name never takes a name in use",
			mapper:    labelMapper{keys: enrich.KeyMapper{AllowAll: true}},
			labels:    map[string]string{"a.b": "1", "a_b": "2", "a_b_conflict1": "3"},
			want:      []enrich.Label{{Name: "a_b", Value: "1"}, {Name: "a_b_conflict1", Value: "3"}, {Name: "a_b_conflict2", Value: "2"}},
			conflicts: []Conflict{{Name: "a_b", Keys: []string{"a_b"}}},
		},
		{
			name:      "workload names are reserved even while unresolved",
			mapper:    labelMapper{keys: enrich.KeyMapper{AllowAll: true}, workload: true},
			labels:    map[string]string{"workload": "mine", "workload-type": "x"},
			want:      []enrich.Label{{Name: "workload_conflict1", Value: "mine"}, {Name: "workload_type_conflict1", Value: "x"}},
			conflicts: []Conflict{{Name: "workload", Keys: []string{"workload"}}, {Name: "workload_type", Keys: []string{"workload-type"}}},
		},
		{
			name:   "workload resolved, prefix",
			mapper: labelMapper{keys: enrich.KeyMapper{Prefix: "pod_", Allow: map[string]struct{}{"app": {}}}, workload: true},
			labels: map[string]string{"app": "web", "other": "no"},
			w:      "web", wt: "deployment", resolved: true,
			want: []enrich.Label{{Name: "pod_app", Value: "web"}, {Name: "workload", Value: "web"}, {Name: "workload_type", Value: "deployment"}},
		},
		{
			// A pod label whose name sorts between workload and workload_type.
			name:   "workload labels merged in name order",
			mapper: labelMapper{keys: enrich.KeyMapper{AllowAll: true}, workload: true},
			labels: map[string]string{"workload-a": "x", "zone": "z", "app": "a"},
			w:      "web", wt: "deployment", resolved: true,
			want: []enrich.Label{{Name: "app", Value: "a"}, {Name: "workload", Value: "web"}, {Name: "workload_a", Value: "x"},
				{Name: "workload_type", Value: "deployment"}, {Name: "zone", Value: "z"}},
		},
		{
			name:   "nothing to add",
			mapper: labelMapper{keys: enrich.KeyMapper{Allow: map[string]struct{}{"team": {}}}},
			labels: map[string]string{"app": "web"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, conflicts := c.mapper.newPod(mkPod("ns", "p", "n", c.labels))
			info := PodInfo{PodLabels: p.labels}
			if c.resolved {
				info.Workload, info.WorkloadType = c.w, c.wt
			}
			got := info.Labels()
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("labels %v, want %v", got, c.want)
			}
			if !reflect.DeepEqual(conflicts, c.conflicts) {
				t.Fatalf("conflicts %v, want %v", conflicts, c.conflicts)
			}
			seen := map[string]bool{}
			for _, l := range got {
				if seen[l.Name] || !model.IsValidLabelName(l.Name) {
					t.Fatalf("name %q repeated or invalid", l.Name)
				}
				seen[l.Name] = true
			}
		})
	}
}

func TestConflictsReportedOnce(t *testing.T) {
	ix, _ := staticIndex(t, nil)
	lbls := map[string]string{"a.b": "1", "a_b": "2"}
	ix.add(mkPod("ns", "p", "n", lbls))
	ix.add(mkPod("ns", "p", "n", map[string]string{"a.b": "x", "a_b": "2"})) // same clash, other value
	if got := testutil.ToFloat64(ix.metrics.conflicts); got != 1 {
		t.Fatalf("conflicts %v", got)
	}
}

func TestOptionsValidate(t *testing.T) {
	good := DefaultOptions()
	good.Logger = discard()
	if _, err := good.Config(); err != nil {
		t.Fatal(err)
	}
	bad := good
	bad.DeletedGrace, bad.MaxTombstones, bad.Logger = -1, -1, nil
	bad.Labels = enrich.KeyMapper{Prefix: "9x", Allow: map[string]struct{}{"": {}}}
	_, err := bad.Config()
	if err == nil {
		t.Fatal("bad options accepted")
	}
	for _, want := range []string{"deleted grace", "max tombstones", "no logger", `prefix "9x"`, "empty pod label key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

// TestStripSharesName checks that the stripped pod keeps no second copy of
// what its name contains (its ReplicaSet's name, app and pod-template-hash
// values), and still has the same values.
func TestStripSharesName(t *testing.T) {
	m := labelMapper{keys: enrich.KeyMapper{AllowAll: true}, workload: true}
	o := mkPod("shop", "web-7d9f8b6c5d-x2x7q", "node-a",
		map[string]string{"app": "web", "pod-template-hash": "7d9f8b6c5d", "tier": "gold"}, ref("ReplicaSet", "web-7d9f8b6c5d", true))
	// Strings of their own, as decoding gives.
	o.Name = strings.Clone(o.Name)
	o.OwnerReferences[0].Name = strings.Clone(o.OwnerReferences[0].Name)
	for k, v := range o.Labels {
		o.Labels[k] = strings.Clone(v)
	}
	p, _ := m.newPod(o)
	inName := func(s string) bool {
		lo := uintptr(unsafe.Pointer(unsafe.StringData(p.name)))
		at := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		return at >= lo && at+uintptr(len(s)) <= lo+uintptr(len(p.name))
	}
	if p.owner.name != "web-7d9f8b6c5d" || !inName(p.owner.name) {
		t.Errorf("owner %q, shared with the name: %v", p.owner.name, inName(p.owner.name))
	}
	want := map[string]string{"app": "web", "pod_template_hash": "7d9f8b6c5d", "tier": "gold"}
	for _, l := range p.labels {
		if want[l.Name] != l.Value {
			t.Errorf("label %s=%q, want %q", l.Name, l.Value, want[l.Name])
		}
		if shared := inName(l.Value); shared != (l.Name != "tier") {
			t.Errorf("label %s=%q shares the name's memory: %v", l.Name, l.Value, shared)
		}
	}
	if len(p.labels) != len(want) {
		t.Errorf("labels %v", p.labels)
	}
}
