package loadbench

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"regexp"
	"slices"
	"testing"
	"time"
)

// podsIn lists the distinct namespace/pod pairs of an exposition.
func podsIn(text []byte) []string {
	re := regexp.MustCompile(`namespace="([^"]*)",pod="([^"]*)"|pod="([^"]*)".*?namespace="([^"]*)"`)
	seen := map[string]bool{}
	for _, m := range re.FindAllSubmatch(text, -1) {
		k := string(m[1]) + "/" + string(m[2])
		if len(m[1]) == 0 {
			k = string(m[4]) + "/" + string(m[3])
		}
		if k != "/" { // node-level lines with empty pod labels
			seen[k] = true
		}
	}
	var out []string
	for k := range seen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// A churn round replaces exactly k application pods (new names, namespaces from the
// spread), the oldest first, and leaves the daemonset pods alone; the exposition has
// exactly the new pod set.
func TestChurnReplacesPods(t *testing.T) {
	tpl := mustTemplate(t)
	w := DefaultWorkload(2)
	k := churnPods(w, 0.33)
	if k != 10 {
		t.Fatalf("churn 0.33 of 30 pods: %d, want 10", k)
	}
	g := tpl.newNodeGen(w, 1)
	before := g.render()
	if !bytes.Equal(before.Text, tpl.GenerateNode(w, 1).Text) {
		t.Fatal("newNodeGen(w, 1).render() differs from GenerateNode(w, 1)")
	}
	nsOK := w.NamespaceLabels()
	cursor := 0
	prev := before
	for round := range 3 {
		g.churn(w, k, &cursor)
		n := g.render()
		if len(n.Pods) != len(prev.Pods) {
			t.Fatalf("round %d: %d pods, was %d", round, len(n.Pods), len(prev.Pods))
		}
		changed := 0
		for i := range n.Pods {
			if n.Pods[i] == prev.Pods[i] {
				continue
			}
			changed++
			if prev.Pods[i].Namespace == "kube-system" || n.Pods[i].Namespace == "kube-system" {
				t.Fatalf("round %d: daemonset pod %v replaced by %v", round, prev.Pods[i], n.Pods[i])
			}
			if _, ok := nsOK[n.Pods[i].Namespace]; !ok {
				t.Fatalf("round %d: new pod in unknown namespace %q", round, n.Pods[i].Namespace)
			}
		}
		if changed != k {
			t.Fatalf("round %d: %d pods replaced, want %d", round, changed, k)
		}
		var want []string
		for _, p := range n.Pods {
			want = append(want, p.Namespace+"/"+p.Name)
		}
		slices.Sort(want)
		want = slices.Compact(want)
		if got := podsIn(n.Text); !slices.Equal(got, want) {
			t.Fatalf("round %d: exposition has pods %v, want %v", round, got, want)
		}
		if _, err := n.Prepare(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		prev = n
	}
}

// With churn on, every scrape of a kubelet serves a new generation (k pods replaced); with
// it off, the same pods again.
func TestKubeletChurn(t *testing.T) {
	tpl := mustTemplate(t)
	w := DefaultWorkload(1)
	n := tpl.GenerateNode(w, 0)
	ks := startNodeKubelet(t, n)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	scrape := func() []string {
		req, _ := http.NewRequest(http.MethodGet, "https://"+ks.List[0].Addr+"/metrics/cadvisor", nil)
		req.Header.Set("Authorization", "Bearer x")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, %v", resp.StatusCode, err)
		}
		return podsIn(b)
	}
	diff := func(a, b []string) int {
		n := 0
		for _, p := range b {
			if !slices.Contains(a, p) {
				n++
			}
		}
		return n
	}
	p0 := scrape()
	if err := ks.startChurn(context.Background(), tpl, w, 0.33); err != nil {
		t.Fatal(err)
	}
	p1 := scrape()
	if d := diff(p0, p1); d != 10 {
		t.Fatalf("first churned scrape: %d new pods, want 10", d)
	}
	// The next generation is built in the background after a scrape; wait for it.
	for deadline := time.Now().Add(10 * time.Second); len(ks.List[0].churn.Load().next) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("next generation not ready after 10s")
		}
	}
	p2 := scrape()
	if d := diff(p1, p2); d != 10 {
		t.Fatalf("second churned scrape: %d new pods, want 10", d)
	}
	ks.stopChurn()
	if p3 := scrape(); !slices.Equal(p2, p3) {
		t.Fatalf("churn off: pods changed")
	}
	served, missed, err := ks.churnCounts()
	if served != 2 || missed != 0 || err != nil {
		t.Fatalf("churn counts: %d served, %d missed, %v; want 2, 0, nil", served, missed, err)
	}
}

func TestVariants(t *testing.T) {
	for _, tc := range []struct {
		modes, protos, gzips []string
		want                 []string
		err                  bool
	}{
		{nil, nil, nil, []string{"kubelet"}, false},
		{[]string{"kubelet", "apiserver"}, nil, nil, []string{"kubelet", "apiserver"}, false},
		{[]string{"apiserver"}, []string{"http/1.1", "h2"}, []string{"on", "off"},
			[]string{"apiserver 1.1 gzip", "apiserver 1.1 identity", "apiserver h2 gzip", "apiserver h2 identity"}, false},
		{[]string{"apiserver"}, []string{"http2"}, nil, nil, true},
		{[]string{"apiserver"}, nil, []string{"yes"}, nil, true},
		{[]string{"direct"}, nil, nil, nil, true},
	} {
		vs, err := Variants(tc.modes, tc.protos, tc.gzips)
		if (err != nil) != tc.err {
			t.Fatalf("%v %v %v: error %v, want error %v", tc.modes, tc.protos, tc.gzips, err, tc.err)
		}
		var got []string
		for _, v := range vs {
			got = append(got, v.Name())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%v %v %v: %q, want %q", tc.modes, tc.protos, tc.gzips, got, tc.want)
		}
	}
}
