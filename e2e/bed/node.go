package bed

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KubeletPort is the port every fake kubelet listens on (each node has its own IP).
const KubeletPort = 10250

// Node is a Node object with its fake kubelet inside the bed's netns.
type Node struct {
	Name string
	IP   string // InternalIP, in the netns
	Port int
	// KubeletURL is https://IP:Port (serving certificate from the bed's CA, for IP).
	KubeletURL string
	// Offset rotates the pod to namespace round robin of this node's capture.
	Offset int
	// LogFile is the fake kubelet's log (one line per request, with the authenticated user).
	LogFile string
	p       *proc
}

// Nodes returns the nodes, by name.
func (b *Bed) Nodes() []*Node {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*Node, 0, len(b.nodes))
	for _, n := range b.nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Node returns a node by name, or nil.
func (b *Bed) Node(name string) *Node {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nodes[name]
}

// AddNode starts a fake kubelet on a new netns address and registers a Ready Node object
// pointing at it (InternalIP, daemonEndpoints.kubeletEndpoint.Port).
func (b *Bed) AddNode(ctx context.Context, name string) (*Node, error) {
	b.mu.Lock()
	if _, ok := b.nodes[name]; ok {
		b.mu.Unlock()
		return nil, fmt.Errorf("node %s exists", name)
	}
	idx := b.nextIP
	b.nextIP++
	b.mu.Unlock()
	if idx > 240 {
		return nil, fmt.Errorf("too many nodes")
	}
	n := &Node{Name: name, IP: fmt.Sprintf("%s%d", b.ns.subnet, 10+idx), Port: KubeletPort, Offset: idx}
	n.KubeletURL = fmt.Sprintf("https://%s:%d", n.IP, n.Port)
	if err := b.ns.addIP(ctx, n.IP); err != nil {
		return nil, err
	}
	scrt, skey, err := b.ca.issue("kubelet-"+name, name, nil, []net.IP{net.ParseIP(n.IP)}, []string{name}, true, false)
	if err != nil {
		return nil, err
	}
	ccrt, ckey, err := b.ca.issue("node-"+name, "system:node:"+name, []string{"system:nodes"}, nil, nil, false, true)
	if err != nil {
		return nil, err
	}
	n.p = b.newProc("fake-kubelet-"+name, "ip", "netns", "exec", b.Netns, b.bin.fakeKubelet,
		"--node-name="+name, fmt.Sprintf("--listen=%s:%d", n.IP, n.Port),
		"--tls-cert-file="+scrt, "--tls-private-key-file="+skey, "--client-ca-file="+b.CAFile,
		"--apiserver="+b.APIServerURL, "--apiserver-ca-file="+b.CAFile,
		"--apiserver-cert-file="+ccrt, "--apiserver-key-file="+ckey,
		"--capture="+b.opts.Capture, "--namespaces="+strings.Join(b.Namespaces, ","),
		fmt.Sprintf("--offset=%d", n.Offset), "--auth-cache-ttl="+b.opts.KubeletAuthCacheTTL.String())
	n.LogFile = n.p.logPath
	if err := n.p.start(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.nodes[name] = n
	b.mu.Unlock()
	if err := waitFor(ctx, "fake kubelet "+name, 30*time.Second, n.p, tcpOpen(fmt.Sprintf("%s:%d", n.IP, n.Port))); err != nil {
		return nil, err
	}
	if err := b.registerNode(ctx, n); err != nil {
		return nil, fmt.Errorf("register node %s: %w", name, err)
	}
	b.logf("node %s at %s", name, n.KubeletURL)
	return n, nil
}

func (b *Bed) registerNode(ctx context.Context, n *Node) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   n.Name,
		Labels: map[string]string{"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux"},
	}}
	created, err := b.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	created.Status = corev1.NodeStatus{
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: n.IP},
			{Type: corev1.NodeHostName, Address: n.Name},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(n.Port)}},
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "fake kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.35.0", OperatingSystem: "linux", Architecture: "amd64"},
	}
	_, err = b.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return err
}

// DeleteNode deletes the Node object and stops its fake kubelet.
func (b *Bed) DeleteNode(ctx context.Context, name string) error {
	b.mu.Lock()
	n := b.nodes[name]
	delete(b.nodes, name)
	b.mu.Unlock()
	if n == nil {
		return fmt.Errorf("no node %s", name)
	}
	err := b.Client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		err = nil
	}
	n.p.stop(3 * time.Second)
	if derr := b.ns.delIP(ctx, n.IP); err == nil {
		err = derr
	}
	return err
}

// StopKubelet stops a node's fake kubelet but keeps the Node object (the node goes dark).
func (b *Bed) StopKubelet(name string) error {
	n := b.Node(name)
	if n == nil {
		return fmt.Errorf("no node %s", name)
	}
	n.p.stop(3 * time.Second)
	return nil
}

// StartKubelet starts a stopped fake kubelet again.
func (b *Bed) StartKubelet(ctx context.Context, name string) error {
	n := b.Node(name)
	if n == nil {
		return fmt.Errorf("no node %s", name)
	}
	if n.p.running() {
		return nil
	}
	if err := n.p.start(); err != nil {
		return err
	}
	return waitFor(ctx, "fake kubelet "+name, 30*time.Second, n.p, tcpOpen(fmt.Sprintf("%s:%d", n.IP, n.Port)))
}

// KubeletGet does GET PATH on a node's fake kubelet directly, with a bearer token ("" for
// none), verifying its serving certificate with the bed's CA.
func (b *Bed) KubeletGet(ctx context.Context, node, path, token string) (int, []byte, error) {
	n := b.Node(node)
	if n == nil {
		return 0, nil, fmt.Errorf("no node %s", node)
	}
	hc, err := b.tlsClient()
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.KubeletURL+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return doRead(hc, req)
}

func doRead(hc *http.Client, req *http.Request) (int, []byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// RegisterNode registers a Ready Node object for a kubelet the caller runs itself (with
// KubeOnly): InternalIP ip, status.daemonEndpoints.kubeletEndpoint.Port port. The bed does
// not track it as one of its Nodes.
func (b *Bed) RegisterNode(ctx context.Context, name, ip string, port int) error {
	return b.registerNode(ctx, &Node{Name: name, IP: ip, Port: port})
}
