package scrape

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/kubeclient/clientset"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/poll"
)

func node(name string, port int32, labels map[string]string, addrs ...corev1.NodeAddress) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	n.Status.Addresses = addrs
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = port
	return n
}

func addr(t corev1.NodeAddressType, a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: t, Address: a}
}

func TestNodeTarget(t *testing.T) {
	full := node("node-a", 10250, nil,
		addr(corev1.NodeHostName, "node-a.local"), addr(corev1.NodeExternalIP, "203.0.113.5"), addr(corev1.NodeInternalIP, "10.0.0.5"))
	defaults := NodeTargetOptions{Path: "/metrics/cadvisor", Job: "kubelet", MetricsPathLabel: "metrics_path", NodeLabel: "node"}
	with := func(f func(o *NodeTargetOptions)) NodeTargetOptions { o := defaults; f(&o); return o }
	for _, tc := range []struct {
		name    string
		opts    NodeTargetOptions
		node    *corev1.Node
		nilWant bool
		addr    string
		url     string
		labels  []enrich.Label
	}{
		{name: "InternalIP preferred", opts: defaults, node: full, addr: "10.0.0.5:10250",
			labels: labelsOf("instance", "10.0.0.5:10250", "job", "kubelet", "metrics_path", "/metrics/cadvisor", "node", "node-a")},
		{name: "ExternalIP next", opts: defaults, node: node("n", 10250, nil, addr(corev1.NodeHostName, "h"), addr(corev1.NodeExternalIP, "203.0.113.5")), addr: "203.0.113.5:10250"},
		{name: "Hostname fallback", opts: defaults, node: node("n", 10250, nil, addr(corev1.NodeHostName, "n.local")), addr: "n.local:10250"},
		{name: "no address: the name", opts: defaults, node: node("n", 10250, nil), addr: "n:10250"},
		{name: "daemonEndpoints port", opts: defaults, node: node("n", 10255, nil, addr(corev1.NodeInternalIP, "10.0.0.1")), addr: "10.0.0.1:10255"},
		{name: "no port: default", opts: defaults, node: node("n", 0, nil, addr(corev1.NodeInternalIP, "10.0.0.1")), addr: "10.0.0.1:10250"},
		{name: "--node-port overrides", opts: with(func(o *NodeTargetOptions) { o.Port = 443 }), node: full, addr: "10.0.0.5:443"},
		{name: "--node-ip overrides", opts: with(func(o *NodeTargetOptions) { o.Address = "192.0.2.9"; o.NameOrIP = "node-a" }), node: full, addr: "192.0.2.9:10250"},
		{name: "IPv6", opts: defaults, node: node("n", 10250, nil, addr(corev1.NodeInternalIP, "fd00::1")), addr: "[fd00::1]:10250"},
		{name: "NameOrIP by name", opts: with(func(o *NodeTargetOptions) { o.NameOrIP = "node-a" }), node: full, addr: "10.0.0.5:10250"},
		{name: "NameOrIP by address", opts: with(func(o *NodeTargetOptions) { o.NameOrIP = "203.0.113.5" }), node: full, addr: "10.0.0.5:10250"},
		{name: "NameOrIP other node", opts: with(func(o *NodeTargetOptions) { o.NameOrIP = "node-b" }), node: full, nilWant: true},
		{name: "Direct URL", opts: with(func(o *NodeTargetOptions) { o.Direct = true }), node: full, addr: "10.0.0.5:10250", url: "https://10.0.0.5:10250/metrics/cadvisor"},
		{name: "Direct URL IPv6", opts: with(func(o *NodeTargetOptions) { o.Direct = true; o.Port = 443 }), node: node("n", 0, nil, addr(corev1.NodeInternalIP, "fd00::1")), addr: "[fd00::1]:443", url: "https://[fd00::1]:443/metrics/cadvisor"},
		{name: "labels renamed", opts: with(func(o *NodeTargetOptions) {
			o.NodeLabel = "kubernetes_node"
			o.MetricsPathLabel = "path"
			o.Job = "cadvisor"
		}), node: full, addr: "10.0.0.5:10250",
			labels: labelsOf("instance", "10.0.0.5:10250", "job", "cadvisor", "kubernetes_node", "node-a", "path", "/metrics/cadvisor")},
		{name: "labels omitted", opts: with(func(o *NodeTargetOptions) { o.NodeLabel = ""; o.MetricsPathLabel = ""; o.Job = "" }), node: full, addr: "10.0.0.5:10250",
			labels: labelsOf("instance", "10.0.0.5:10250")},
		{name: "not our shard", opts: with(func(o *NodeTargetOptions) { o.Shard = Shard{Index: 1 - (Shard{Count: 2}).Owner("node-a"), Count: 2} }), node: full, nilWant: true},
		{name: "our shard", opts: with(func(o *NodeTargetOptions) { o.Shard = Shard{Index: (Shard{Count: 2}).Owner("node-a"), Count: 2} }), node: full, addr: "10.0.0.5:10250"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.opts.NodeTarget(tc.node)
			if tc.nilWant {
				if got != nil {
					t.Fatalf("want no target, got %+v", got)
				}
				return
			}
			if got == nil {
				t.Fatal("no target")
			}
			if got.Address != tc.addr || got.URL != tc.url || got.Key != "node/"+tc.node.Name || got.Node != tc.node.Name || got.Path != "/metrics/cadvisor" {
				t.Fatalf("target %+v; want address %q url %q", got, tc.addr, tc.url)
			}
			if tc.labels != nil && !reflect.DeepEqual(got.Labels, tc.labels) {
				t.Fatalf("labels %v, want %v", got.Labels, tc.labels)
			}
			for i := 1; i < len(got.Labels); i++ {
				if got.Labels[i-1].Name >= got.Labels[i].Name {
					t.Fatalf("labels not sorted: %v", got.Labels)
				}
			}
			if !got.Same(tc.opts.NodeTarget(tc.node)) {
				t.Fatal("the same node makes a different target")
			}
		})
	}
}

func TestStaticTarget(t *testing.T) {
	o := NodeTargetOptions{Direct: true, Path: "/metrics/cadvisor", NameOrIP: "10.1.2.3", Job: "kubelet"}
	tg := o.StaticTarget()
	if tg.URL != "https://10.1.2.3:10250/metrics/cadvisor" || tg.Node != "10.1.2.3" {
		t.Fatalf("%+v", tg)
	}
}

func TestPlainTarget(t *testing.T) {
	for _, tc := range []struct{ url, instance string }{
		{"http://kube-state-metrics:8080/metrics", "kube-state-metrics:8080"},
		{"http://ksm/metrics", "ksm:80"},
		{"https://ksm/metrics", "ksm:443"},
		{"https://[fd00::1]/metrics", "[fd00::1]:443"},
	} {
		tg, err := PlainTarget(tc.url, "kubelet-meta-proxy")
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		want := labelsOf("instance", tc.instance, "job", "kubelet-meta-proxy")
		if tg.Address != tc.instance || tg.URL != tc.url || tg.Node != "" || !reflect.DeepEqual(tg.Labels, want) {
			t.Errorf("%s: %+v", tc.url, tg)
		}
	}
	for _, bad := range []string{"ksm:8080/metrics", "ftp://ksm/metrics", "http:///metrics", "://x", "http://%zz/"} {
		_, err := PlainTarget(bad, "j")
		if err == nil || !strings.HasPrefix(err.Error(), fmt.Sprintf("%q: ", bad)) {
			t.Errorf("%q: error %v does not name the URL", bad, err)
		}
	}
}

func TestShardEveryNodeOwnedOnce(t *testing.T) {
	names := make([]string, 500)
	for i := range names {
		names[i] = fmt.Sprintf("ip-10-0-%d-%d.ec2.internal", i/200, i%200)
	}
	for n := 1; n <= 7; n++ {
		perReplica := make([]int, n)
		for _, name := range names {
			owners := 0
			for i := 0; i < n; i++ {
				if (Shard{Index: i, Count: n}).Owns(name) {
					owners++
					perReplica[i]++
				}
			}
			if owners != 1 {
				t.Fatalf("N=%d: %s owned by %d replicas", n, name, owners)
			}
		}
		for i, c := range perReplica {
			if exp := 500 / n; c < exp/2 || c > exp*3/2 {
				t.Errorf("N=%d: replica %d owns %d of 500 nodes (expected about %d)", n, i, c, exp)
			}
		}
		if n == 7 {
			break
		}
		moved := 0
		for _, name := range names {
			before, after := (Shard{Count: n}).Owner(name), (Shard{Count: n + 1}).Owner(name)
			if before != after {
				moved++
				if after != n {
					t.Fatalf("N=%d->%d: %s moved from %d to %d, not to the new replica", n, n+1, name, before, after)
				}
			}
		}
		frac, ideal := float64(moved)/500, 1/float64(n+1)
		if frac < 0.5*ideal || frac > 1.6*ideal {
			t.Errorf("N=%d->%d: %.3f of the nodes moved, want about %.3f", n, n+1, frac, ideal)
		}
	}
}

var waitFor = poll.Until

func targetKeys(ts []*Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Key)
	}
	return out
}

func TestNodeDiscovery(t *testing.T) {
	client := fake.NewSimpleClientset(node("node-a", 10250, nil, addr(corev1.NodeInternalIP, "10.0.0.1")))
	var notified atomic.Int32
	d := NewNodeDiscovery(clientset.New(client), "", NodeTargetOptions{Path: "/metrics/cadvisor", Job: "kubelet"}, func() { notified.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	if !d.WaitForSync(ctx) {
		t.Fatal("not synced")
	}
	waitFor(t, "node-a", func() bool { return reflect.DeepEqual(targetKeys(d.Targets()), []string{"node/node-a"}) })

	before := notified.Load()
	_, err := client.CoreV1().Nodes().Create(ctx, node("node-b", 10250, nil, addr(corev1.NodeInternalIP, "10.0.0.2")), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node-b added", func() bool {
		return notified.Load() > before && reflect.DeepEqual(targetKeys(d.Targets()), []string{"node/node-a", "node/node-b"})
	})

	before = notified.Load()
	if err := client.CoreV1().Nodes().Delete(ctx, "node-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node-a deleted", func() bool {
		return notified.Load() > before && reflect.DeepEqual(targetKeys(d.Targets()), []string{"node/node-b"})
	})
}

func listRestrictions(t *testing.T, client *fake.Clientset) k8stesting.ListRestrictions {
	t.Helper()
	for _, a := range client.Actions() {
		if la, ok := a.(k8stesting.ListAction); ok && a.GetResource().Resource == "nodes" {
			return la.GetListRestrictions()
		}
	}
	t.Fatal("no node list")
	return k8stesting.ListRestrictions{}
}

func TestNodeDiscoverySelectors(t *testing.T) {
	nodes := []*corev1.Node{
		node("worker-1", 10250, map[string]string{"role": "worker"}, addr(corev1.NodeInternalIP, "10.0.0.1")),
		node("master-1", 10250, map[string]string{"role": "master"}, addr(corev1.NodeInternalIP, "10.0.0.2")),
	}
	start := func(t *testing.T, selector string, opts NodeTargetOptions) (*fake.Clientset, *NodeDiscovery) {
		client := fake.NewSimpleClientset(nodes[0], nodes[1])
		d := NewNodeDiscovery(clientset.New(client), selector, opts, func() {})
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go d.Run(ctx)
		if !d.WaitForSync(ctx) {
			t.Fatal("not synced")
		}
		return client, d
	}
	t.Run("label selector", func(t *testing.T) {
		client, d := start(t, "role=worker", NodeTargetOptions{Path: "/p"})
		if got := targetKeys(d.Targets()); !reflect.DeepEqual(got, []string{"node/worker-1"}) {
			t.Fatalf("targets %v", got)
		}
		r := listRestrictions(t, client)
		if r.Labels.String() != "role=worker" || !r.Fields.Empty() {
			t.Fatalf("list restrictions %v", r)
		}
	})
	t.Run("field selector for a node name", func(t *testing.T) {
		client, d := start(t, "", NodeTargetOptions{Path: "/p", NameOrIP: "master-1"})
		if got := targetKeys(d.Targets()); !reflect.DeepEqual(got, []string{"node/master-1"}) {
			t.Fatalf("targets %v", got)
		}
		if r := listRestrictions(t, client); r.Fields.String() != "metadata.name=master-1" {
			t.Fatalf("field selector %q", r.Fields.String())
		}
	})
	t.Run("no field selector for an address", func(t *testing.T) {
		client, d := start(t, "", NodeTargetOptions{Path: "/p", NameOrIP: "10.0.0.1"})
		if got := targetKeys(d.Targets()); !reflect.DeepEqual(got, []string{"node/worker-1"}) {
			t.Fatalf("targets %v", got)
		}
		if r := listRestrictions(t, client); !r.Fields.Empty() {
			t.Fatalf("field selector %q", r.Fields.String())
		}
	})
	t.Run("static target for an unknown address in kubelet mode", func(t *testing.T) {
		_, d := start(t, "", NodeTargetOptions{Direct: true, Path: "/p", NameOrIP: "10.9.9.9"})
		got := d.Targets()
		if len(got) != 1 || got[0].URL != "https://10.9.9.9:10250/p" {
			t.Fatalf("targets %+v", got)
		}
	})
}

func labelsOf(kv ...string) []enrich.Label {
	var out []enrich.Label
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, enrich.Label{Name: kv[i], Value: kv[i+1]})
	}
	return out
}
