package nsindex

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/metadata/fake"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/poll"
)

func nsObject(name string, labels, annotations map[string]string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
	}
}

func teamMapper() enrich.NamespaceMapper {
	return enrich.NamespaceMapper{
		Labels:      enrich.KeyMapper{Allow: map[string]struct{}{"team": {}, "te.am": {}}},
		Annotations: enrich.KeyMapper{Allow: map[string]struct{}{"team": {}}},
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startIndex(t *testing.T, objs ...runtime.Object) (*Index, *fake.FakeMetadataClient, *prometheus.Registry) {
	t.Helper()
	scheme := fake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	client := fake.NewSimpleMetadataClient(scheme, objs...)
	reg := prometheus.NewRegistry()
	ix := New(client, teamMapper(), 0, discard(), reg)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go ix.Run(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if !ix.WaitForSync(wctx) || !ix.Synced() {
		t.Fatal("informer did not sync")
	}
	return ix, client, reg
}

var eventually = poll.Until

func labelsIn(ix *enrich.NamespaceIndex, ns string) []enrich.Label {
	info, ok := ix.Lookup(ns)
	if !ok {
		return nil
	}
	return info.Labels
}

func TestIndexFollowsNamespaces(t *testing.T) {
	ix, client, reg := startIndex(t,
		nsObject("web", map[string]string{"team": "frontend"}, nil),
		nsObject("db", map[string]string{"team": "storage"}, nil),
		nsObject("plain", nil, nil),
	)
	snap := ix.Snapshot()
	want := []enrich.Label{{Name: "team", Value: "frontend"}}
	if got := labelsIn(snap, "web"); !reflect.DeepEqual(got, want) {
		t.Fatalf("web: %v", got)
	}
	if snap.Len() != 3 {
		t.Fatalf("%d namespaces", snap.Len())
	}
	if info, ok := snap.Lookup("plain"); !ok || len(info.Labels) != 0 {
		t.Fatalf("plain: %v %v", info, ok)
	}
	if ix.Snapshot() != snap {
		t.Fatal("nothing changed, yet Snapshot built a new index")
	}
	if got := testutil.ToFloat64(ix.namespace); got != 3 {
		t.Fatalf("namespaces gauge %v", got)
	}
	webV, dbV, gen := mustLookup(t, snap, "web").Version, mustLookup(t, snap, "db").Version, snap.Generation()

	// Relabel web: a new Version for web only, a higher Generation.
	tr := client.Tracker()
	if err := tr.Update(namespacesResource, nsObject("web", map[string]string{"team": "checkout"}, nil), ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web relabelled", func() bool {
		return reflect.DeepEqual(labelsIn(ix.Snapshot(), "web"), []enrich.Label{{Name: "team", Value: "checkout"}})
	})
	snap2 := ix.Snapshot()
	if snap2.Generation() <= gen {
		t.Fatalf("generation %d after %d", snap2.Generation(), gen)
	}
	if v := mustLookup(t, snap2, "web").Version; v == webV {
		t.Fatal("web's Version did not change")
	}
	if v := mustLookup(t, snap2, "db").Version; v != dbV {
		t.Fatal("db's Version changed although its labels did not")
	}
	if labelsIn(snap, "web")[0].Value != "frontend" {
		t.Fatal("an earlier snapshot was modified")
	}

	// An update that does not change the added labels changes nothing.
	if err := tr.Update(namespacesResource, nsObject("db", map[string]string{"team": "storage", "other": "x"}, nil), ""); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if ix.Snapshot() != snap2 {
		t.Fatal("an irrelevant change rebuilt the snapshot")
	}

	// Delete.
	if err := tr.Delete(namespacesResource, "", "db"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "db gone", func() bool { _, ok := ix.Snapshot().Lookup("db"); return !ok })
	if ix.Snapshot().Generation() <= snap2.Generation() {
		t.Fatal("generation did not grow on delete")
	}
	// Create.
	if err := tr.Create(namespacesResource, nsObject("new", map[string]string{"team": "frontend"}, nil), ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new namespace", func() bool { return labelsIn(ix.Snapshot(), "new") != nil })
	if got := testutil.ToFloat64(ix.changes); got < 6 {
		t.Fatalf("changes counter %v", got)
	}
	_ = reg
}

func mustLookup(t *testing.T, ix *enrich.NamespaceIndex, ns string) enrich.NamespaceInfo {
	t.Helper()
	info, ok := ix.Lookup(ns)
	if !ok {
		t.Fatalf("namespace %s not in the index", ns)
	}
	return info
}

func TestConflictsReportedOnce(t *testing.T) {
	ix := NewStatic(teamMapper(), discard())
	// The label team and the annotation team clash (te.am would not: it
	// sanitizes to te_am).
	lbls := map[string]string{"team": "a"}
	anns := map[string]string{"team": "b"}
	ix.Set("web", lbls, anns)
	if got := testutil.ToFloat64(ix.conflicts); got != 1 {
		t.Fatalf("conflicts %v after the first Set", got)
	}
	want := []enrich.Label{{Name: "team", Value: "a"}, {Name: "team_conflict1", Value: "b"}}
	if got := labelsIn(ix.Snapshot(), "web"); !reflect.DeepEqual(got, want) {
		t.Fatalf("labels %v", got)
	}
	// The same conflict again (a resync, or another value): not reported again.
	ix.Set("web", lbls, anns)
	ix.Set("web", map[string]string{"team": "c"}, anns)
	if got := testutil.ToFloat64(ix.conflicts); got != 1 {
		t.Fatalf("conflicts %v after the same conflict again", got)
	}
	// After a delete, a re-created namespace reports afresh.
	ix.Delete("web")
	ix.Set("web", lbls, anns)
	if got := testutil.ToFloat64(ix.conflicts); got != 2 {
		t.Fatalf("conflicts %v after re-creation", got)
	}
}

func TestStaticIndex(t *testing.T) {
	ix := NewStatic(teamMapper(), discard())
	if !ix.Synced() {
		t.Fatal("a static index is synced")
	}
	empty := ix.Snapshot()
	if empty.Len() != 0 || empty.Generation() != 0 {
		t.Fatal("not empty")
	}
	ix.Set("web", map[string]string{"team": "frontend"}, nil)
	s1 := ix.Snapshot()
	if s1 == empty || s1.Generation() == 0 {
		t.Fatal("no new snapshot after Set")
	}
	ix.Set("web", map[string]string{"team": "frontend"}, nil)
	ix.Delete("missing")
	if ix.Snapshot() != s1 {
		t.Fatal("no-op changes rebuilt the snapshot")
	}
}
