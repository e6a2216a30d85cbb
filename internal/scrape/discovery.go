package scrape

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"

	"github.com/cespare/xxhash/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/kubeclient"
)

// DefaultKubeletPort is used when a Node does not report its kubelet port.
const DefaultKubeletPort = 10250

// NodeTargetOptions say how a Node becomes a target.
type NodeTargetOptions struct {
	// Direct: scrape https://ADDRESS:PORT/PATH (kubelet mode); otherwise the
	// apiserver's node proxy.
	Direct bool
	// Path is scraped when Endpoints is empty.
	Path string
	// Endpoints are scraped as one target each per node (kube-prometheus
	// scrapes each kubelet endpoint as a ServiceMonitor endpoint of its own).
	Endpoints []KubeletEndpoint
	// Port overrides status.daemonEndpoints.kubeletEndpoint.Port when > 0.
	Port int
	// Address overrides the node's address.
	Address string
	// NameOrIP keeps only the node with that name or address.
	NameOrIP string
	// Job, MetricsPathLabel and NodeLabel name the target labels; an empty
	// label name leaves that label out.
	Job              string
	MetricsPathLabel string
	NodeLabel        string
	// Service and PortName are the values of the service and endpoint
	// target labels (kube-prometheus: service="kubelet",
	// endpoint="https-metrics"); empty leaves the label out.
	Service  string
	PortName string
	// Shard keeps only the nodes this replica owns.
	Shard Shard
}

// NodeTarget turns a Node into a target, or returns nil if it is not ours.
// With Endpoints, it is the target of the first endpoint (NodeTargets has all).
func (o *NodeTargetOptions) NodeTarget(n *corev1.Node) *Target {
	if ts := o.NodeTargets(n); len(ts) > 0 {
		return ts[0]
	}
	return nil
}

// NodeTargets turns a Node into its targets, one per endpoint, or none if
// the node is not ours.
func (o *NodeTargetOptions) NodeTargets(n *corev1.Node) []*Target {
	addr := o.Address
	if addr == "" {
		addr = nodeAddress(n)
	}
	if o.NameOrIP != "" && o.NameOrIP != n.Name && !hasAddress(n, o.NameOrIP) {
		return nil
	}
	if !o.Shard.Owns(n.Name) {
		return nil
	}
	port := o.Port
	if port <= 0 {
		port = int(n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	}
	if port <= 0 {
		port = DefaultKubeletPort
	}
	return o.targets(n.Name, addr, port)
}

// StaticTarget is a kubelet named by name or IP that is an address
// and matches no Node object (kubelet mode without node list access).
func (o *NodeTargetOptions) StaticTarget() *Target {
	return o.StaticTargets()[0]
}

// StaticTargets are StaticTarget's targets, one per endpoint.
func (o *NodeTargetOptions) StaticTargets() []*Target {
	port := o.Port
	if port <= 0 {
		port = DefaultKubeletPort
	}
	return o.targets(o.NameOrIP, o.NameOrIP, port)
}

func (o *NodeTargetOptions) targets(node, addr string, port int) []*Target {
	eps := o.Endpoints
	if len(eps) == 0 {
		eps = []KubeletEndpoint{{Path: o.Path}}
	}
	out := make([]*Target, 0, len(eps))
	for i := range eps {
		out = append(out, o.target(node, addr, port, &eps[i]))
	}
	return out
}

func (o *NodeTargetOptions) target(node, addr string, port int, ep *KubeletEndpoint) *Target {
	hostport := net.JoinHostPort(addr, strconv.Itoa(port))
	// Targets on the same host:port differ by path, as kube-prometheus's
	// do: by metrics_path and by key.
	t := &Target{Key: targetKey(node, ep.Name), Node: node, Address: hostport, Path: ep.Path,
		Endpoint: ep.Name, MetricRelabel: ep.MetricRelabel}
	if o.Direct {
		t.URL = (&url.URL{Scheme: "https", Host: hostport, Path: ep.Path}).String()
	}
	ls := []enrich.Label{{Name: "instance", Value: hostport}}
	for _, l := range []enrich.Label{{Name: "job", Value: o.Job}, {Name: o.MetricsPathLabel, Value: ep.Path},
		{Name: o.NodeLabel, Value: node}, {Name: "service", Value: o.Service}, {Name: "endpoint", Value: o.PortName}} {
		if l.Name != "" && l.Value != "" {
			ls = append(ls, l)
		}
	}
	enrich.SortLabels(ls)
	t.Labels = ls
	return t
}

// PlainTarget is a target given by URL, labelled as Prometheus labels a static
// target: job and instance=HOST:PORT.
func PlainTarget(raw, job string) (*Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q: want an http:// or https:// URL with a host", raw)
	}
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	ls := []enrich.Label{{Name: "instance", Value: host}, {Name: "job", Value: job}}
	enrich.SortLabels(ls)
	return &Target{Key: "target/" + raw, Address: host, URL: raw, Labels: ls}, nil
}

func nodeAddress(n *corev1.Node) string {
	for _, want := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName} {
		for _, a := range n.Status.Addresses {
			if a.Type == want && a.Address != "" {
				return a.Address
			}
		}
	}
	return n.Name
}

func hasAddress(n *corev1.Node, addr string) bool {
	for _, a := range n.Status.Addresses {
		if a.Address == addr {
			return true
		}
	}
	return false
}

// Shard assigns nodes to replicas: Index of Count. Rendezvous hashing, so
// that going from N to N+1 replicas moves only about 1/(N+1) of the nodes.
type Shard struct {
	Index, Count int
}

// Owns reports whether this replica scrapes the node.
func (s Shard) Owns(node string) bool {
	if s.Count <= 1 {
		return true
	}
	return s.Owner(node) == s.Index
}

// Owner is the replica that scrapes the node.
func (s Shard) Owner(node string) int {
	best, bestScore := 0, uint64(0)
	buf := make([]byte, 0, len(node)+8)
	for i := 0; i < s.Count; i++ {
		buf = append(append(buf[:0], node...), byte(i), byte(i>>8), byte(i>>16), byte(i>>24))
		if h := xxhash.Sum64(buf); i == 0 || h > bestScore {
			best, bestScore = i, h
		}
	}
	return best
}

// NodeDiscovery watches Nodes and reports the targets they make.
type NodeDiscovery struct {
	opts     NodeTargetOptions
	informer cache.SharedIndexInformer
	notify   func()
}

// NewNodeDiscovery watches the nodes matching selector (a label selector).
// notify is called after every change.
func NewNodeDiscovery(client kubeclient.Interface, selector string, opts NodeTargetOptions, notify func()) *NodeDiscovery {
	lw := kubeclient.ListWatch(client, client.Nodes(), func(lo *metav1.ListOptions) {
		lo.LabelSelector = selector
		// A DaemonSet pod watches its own node only: 5,000 pods each
		// watching every node would load the apiserver for nothing.
		if opts.NameOrIP != "" && net.ParseIP(opts.NameOrIP) == nil {
			lo.FieldSelector = "metadata.name=" + opts.NameOrIP
		}
	})
	inf := cache.NewSharedIndexInformer(lw, &corev1.Node{}, 0, cache.Indexers{})
	d := &NodeDiscovery{opts: opts, informer: inf, notify: notify}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { d.notify() },
		UpdateFunc: func(old, cur any) { d.notify() },
		DeleteFunc: func(any) { d.notify() },
	})
	return d
}

// Run runs the informer until ctx is done.
func (d *NodeDiscovery) Run(ctx context.Context) { d.informer.Run(ctx.Done()) }

// WaitForSync blocks until the node list is in, or ctx ends.
func (d *NodeDiscovery) WaitForSync(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), d.informer.HasSynced)
}

// Targets returns the targets of the nodes currently known, sorted by key.
func (d *NodeDiscovery) Targets() []*Target {
	var out []*Target
	for _, obj := range d.informer.GetStore().List() {
		if n, ok := obj.(*corev1.Node); ok {
			out = append(out, d.opts.NodeTargets(n)...)
		}
	}
	if len(out) == 0 && d.opts.Direct && d.opts.NameOrIP != "" && net.ParseIP(d.opts.NameOrIP) != nil {
		out = append(out, d.opts.StaticTargets()...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}
