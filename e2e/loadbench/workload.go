// Package loadbench is the whole-process load test of the relay: a workload generator that
// builds realistic per-node cAdvisor expositions from the kubelet 1.35 capture (the shapes of
// testdata/kubelet/WORKLOAD.md), simulated kubelets serving them over HTTPS on 127.0.0.1, a
// remote-write receiver that decodes and counts what the relay delivers, and the driver
// that runs the relay binary against a real kube-apiserver and measures it (Run).
package loadbench

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand"
	"strconv"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/fakekubelet"
)

// Workload says what the simulated cluster looks like.
type Workload struct {
	Nodes       int
	PodsPerNode int // including the node's kube-system daemonset pods
	// Namespaces is how many application namespaces pods are spread over (heavy tail:
	// a Zipf law of exponent ZipfS), named ns-000, ns-001, ... Rank 0 is the biggest.
	Namespaces int
	ZipfS      float64
	// Teams: namespace ns-i gets the label team=team-(i mod Teams).
	Teams int
	// TwoContainers is the share of application pods with two containers (else one).
	TwoContainers float64
	// DaemonSetsMin..DaemonSetsMax kube-system daemonset pods per node (of PodsPerNode).
	DaemonSetsMin, DaemonSetsMax int
	Seed                         int64
}

// DefaultWorkload is the profile of the issue: 30 pods per node (5-8 of them kube-system
// daemonsets), 200 namespaces with a Zipf(1.1) spread over 20 teams (issue 16's tenant
// routing profile), 75% of app pods with 2 containers (WORKLOAD.md: 1.5-2 containers per pod).
func DefaultWorkload(nodes int) Workload {
	return Workload{Nodes: nodes, PodsPerNode: 30, Namespaces: 200, ZipfS: 1.1, Teams: 20,
		TwoContainers: 0.75, DaemonSetsMin: 5, DaemonSetsMax: 8, Seed: 1}
}

// NamespaceName is the name of the application namespace of rank i.
func NamespaceName(i int) string { return fmt.Sprintf("ns-%03d", i) }

// NamespaceLabels returns every application namespace with its labels (team).
func (w Workload) NamespaceLabels() map[string]map[string]string {
	m := make(map[string]map[string]string, w.Namespaces)
	teams := max(w.Teams, 1)
	for i := range w.Namespaces {
		m[NamespaceName(i)] = map[string]string{"team": fmt.Sprintf("team-%02d", i%teams)}
	}
	return m
}

// tline is one sample line of the template: "name{labels} value" and its timestamp.
type tline struct {
	body  []byte
	ts    int64
	hasTS bool
}

// family is one metric family of the capture: its HELP/TYPE lines and its node-level lines.
type family struct {
	name   string
	header []byte
	node   []tline
}

// cgroupLines are one cgroup's lines, by family index.
type cgroupLines map[int][]tline

// podTemplate is a real pod of the capture, split into its parts.
type podTemplate struct {
	namespace, name, uid string
	podCg, sandbox, app  cgroupLines
	sandboxID, appID     string
	container            string
}

// Template is the parsed capture the nodes are cloned from.
type Template struct {
	families []family
	app, ds  []*podTemplate
}

// daemonSets are the kube-system daemonsets a node runs (the first 5-8 of them).
var daemonSets = []string{"kube-proxy", "kindnet", "ebs-csi-node", "fluent-bit", "node-exporter", "node-local-dns", "calico-node", "datadog-agent"}

// LoadTemplate parses the kubelet 1.35 capture. Pod-level lines of network interfaces
// other than eth0 are dropped (the capture has 10 per pod netns; real pods have 1).
func LoadTemplate() (*Template, error) {
	data, err := fakekubelet.ReadCapture("1_35")
	if err != nil {
		return nil, err
	}
	return ParseTemplate(data)
}

// ParseTemplate parses a kubelet cAdvisor exposition (containerd shape: pod cgroup,
// sandbox with name=<id>, app containers) into a Template.
func ParseTemplate(data []byte) (*Template, error) {
	t := &Template{}
	famIdx := map[string]int{}
	cur := -1
	pods := map[string]*podTemplate{}
	var order []string
	for ln, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if line[0] == '#' {
			f := bytes.Fields(line)
			if len(f) < 3 {
				continue
			}
			name := string(f[2])
			i, ok := famIdx[name]
			if !ok {
				i = len(t.families)
				famIdx[name] = i
				t.families = append(t.families, family{name: name})
			}
			cur = i
			t.families[i].header = append(append(t.families[i].header, line...), '\n')
			continue
		}
		tl, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", ln+1, err)
		}
		name := metricName(line)
		if cur < 0 || t.families[cur].name != name {
			i, ok := famIdx[name]
			if !ok {
				i = len(t.families)
				famIdx[name] = i
				t.families = append(t.families, family{name: name})
			}
			cur = i
		}
		ns, pod := labelValue(line, "namespace"), labelValue(line, "pod")
		if pod == "" {
			t.families[cur].node = append(t.families[cur].node, tl)
			continue
		}
		if ifc := labelValue(line, "interface"); ifc != "" && ifc != "eth0" {
			continue
		}
		key := ns + "/" + pod
		p := pods[key]
		if p == nil {
			p = &podTemplate{namespace: ns, name: pod, podCg: cgroupLines{}, sandbox: cgroupLines{}, app: cgroupLines{}}
			pods[key] = p
			order = append(order, key)
		}
		id, ctr, cname := labelValue(line, "id"), labelValue(line, "container"), labelValue(line, "name")
		switch {
		case ctr != "":
			if p.container == "" {
				p.container, p.appID = ctr, lastPathElem(id)
			}
			if ctr == p.container {
				p.app[cur] = append(p.app[cur], tl)
			}
		case cname == "":
			p.uid = podUID(id)
			p.podCg[cur] = append(p.podCg[cur], tl)
		default:
			p.sandboxID = cname
			p.sandbox[cur] = append(p.sandbox[cur], tl)
		}
	}
	for _, k := range order {
		p := pods[k]
		if p.uid == "" || p.sandboxID == "" || p.appID == "" || len(p.podCg) == 0 || len(p.sandbox) == 0 || len(p.app) == 0 {
			continue // e.g. a pod whose container is still being created
		}
		if p.namespace == "kube-system" {
			if p.container == "kube-proxy" || p.container == "kindnet-cni" {
				t.ds = append(t.ds, p)
			}
			continue // static pods (etcd, apiserver, ...) are not cloned
		}
		t.app = append(t.app, p)
	}
	if len(t.app) == 0 || len(t.ds) == 0 {
		return nil, fmt.Errorf("capture has %d usable application pods and %d daemonset pods; need both", len(t.app), len(t.ds))
	}
	return t, nil
}

// NodePod is one pod of a generated node.
type NodePod struct {
	Namespace, Name string
	Containers      int
}

// Node is one generated node: its exposition (with the capture's timestamps) and its pods.
type Node struct {
	Name string
	Text []byte
	Pods []NodePod
	// Series is the number of sample lines.
	Series int
}

// GenerateNode builds node i (0-based) of the workload. It is deterministic in w.Seed and i.
func (t *Template) GenerateNode(w Workload, i int) *Node {
	return t.newNodeGen(w, i).render()
}

// NodePods returns the pods of node i, as GenerateNode makes them, without the text.
func (t *Template) NodePods(w Workload, i int) []NodePod {
	g := t.newNodeGen(w, i)
	pods := make([]NodePod, len(g.clones))
	for j, c := range g.clones {
		pods[j] = c.pod
	}
	return pods
}

// podClone is one pod of a generated node: a template pod with its substitutions.
type podClone struct {
	tpl        *podTemplate
	subst      [][2][]byte // applied to every line
	jitter     [4]int64    // per cgroup: pod, sandbox, app, second app
	containers int
	second     [][2][]byte // extra substitutions for the second container
	pod        NodePod
	ds         bool
}

// nodeGen is a generated node's state: its pods and the random source that made them
// (churn.go replaces pods with it).
type nodeGen struct {
	t      *Template
	name   string
	r      *rand.Rand
	zipf   *rand.Zipf
	clones []podClone
}

func (t *Template) newNodeGen(w Workload, i int) *nodeGen {
	r := rand.New(rand.NewSource(w.Seed*1_000_003 + int64(i)))
	g := &nodeGen{t: t, name: fmt.Sprintf("node-%d", i+1), r: r,
		zipf: rand.NewZipf(r, w.ZipfS, 1, uint64(max(w.Namespaces, 1)-1))}
	nds := w.DaemonSetsMin
	if w.DaemonSetsMax > w.DaemonSetsMin {
		nds += r.Intn(w.DaemonSetsMax - w.DaemonSetsMin + 1)
	}
	nds = min(nds, w.PodsPerNode, len(daemonSets))
	for p := range w.PodsPerNode {
		g.clones = append(g.clones, g.newClone(w, p, p < nds))
	}
	return g
}

// newClone makes a new pod: daemonset pod p of kube-system, or an application pod in a
// namespace drawn from the Zipf spread; new name, UID and container ids.
func (g *nodeGen) newClone(w Workload, p int, ds bool) podClone {
	t, r := g.t, g.r
	c := podClone{ds: ds}
	var ns, name, ctr string
	if ds {
		c.tpl = t.ds[p%len(t.ds)]
		ns, ctr = "kube-system", daemonSets[p]
		name = daemonSets[p] + "-" + randAlnum(r, 5)
		c.containers = 1
	} else {
		c.tpl = t.app[r.Intn(len(t.app))]
		rank := int(g.zipf.Uint64())
		ns = NamespaceName(rank)
		ctr = c.tpl.container
		name = fmt.Sprintf("svc%d-%s-%s", r.Intn(8), randHex(r, 10), randAlnum(r, 5))
		c.containers = 1
		if r.Float64() < w.TwoContainers {
			c.containers = 2
		}
	}
	c.subst = [][2][]byte{
		{[]byte(`namespace="` + c.tpl.namespace + `"`), []byte(`namespace="` + ns + `"`)},
		{[]byte(`pod="` + c.tpl.name + `"`), []byte(`pod="` + name + `"`)},
		{[]byte(c.tpl.uid), []byte(randUID(r))},
		{[]byte(c.tpl.sandboxID), []byte(randHex(r, 64))},
		{[]byte(c.tpl.appID), []byte(randHex(r, 64))},
		{[]byte(`container="` + c.tpl.container + `"`), []byte(`container="` + ctr + `"`)},
	}
	if c.containers == 2 {
		c.second = [][2][]byte{
			{[]byte(c.tpl.appID), []byte(randHex(r, 64))},
			{[]byte(`container="` + c.tpl.container + `"`), []byte(`container="sidecar"`)},
		}
	}
	for j := range c.jitter {
		c.jitter[j] = -r.Int63n(5000) // cgroups are housekept at different moments
	}
	c.pod = NodePod{Namespace: ns, Name: name, Containers: c.containers}
	return c
}

// render writes the node's exposition (with the capture's timestamps).
func (g *nodeGen) render() *Node {
	n := &Node{Name: g.name}
	for _, c := range g.clones {
		n.Pods = append(n.Pods, c.pod)
	}
	buf := make([]byte, 0, 2<<20)
	emit := func(l tline, subst [][2][]byte, jitter int64) {
		start := len(buf)
		buf = append(buf, l.body...)
		for _, s := range subst {
			if bytes.Contains(buf[start:], s[0]) {
				repl := bytes.ReplaceAll(buf[start:], s[0], s[1])
				buf = append(buf[:start], repl...)
			}
		}
		if l.hasTS {
			buf = append(buf, ' ')
			buf = strconv.AppendInt(buf, l.ts+jitter, 10)
		}
		buf = append(buf, '\n')
		n.Series++
	}
	for fi, f := range g.t.families {
		buf = append(buf, f.header...)
		for _, l := range f.node {
			emit(l, nil, 0)
		}
		for _, c := range g.clones {
			for _, l := range c.tpl.podCg[fi] {
				emit(l, c.subst, c.jitter[0])
			}
			for _, l := range c.tpl.sandbox[fi] {
				emit(l, c.subst, c.jitter[1])
			}
			for _, l := range c.tpl.app[fi] {
				emit(l, c.subst, c.jitter[2])
			}
			if c.containers == 2 {
				for _, l := range c.tpl.app[fi] {
					emit(l, append(c.second[:len(c.second):len(c.second)], c.subst...), c.jitter[3])
				}
			}
		}
	}
	n.Text = buf
	return n
}

// Prepare turns the node's text into a fakekubelet.Capture: per scrape only the timestamps
// are rewritten (the newest becomes now).
func (n *Node) Prepare() (*fakekubelet.Capture, error) {
	return fakekubelet.Prepare(n.Text, fakekubelet.RewriteOptions{})
}

func parseLine(line []byte) (tline, error) {
	rest := bytes.LastIndexByte(line, '}')
	if rest < 0 {
		rest = bytes.IndexAny(line, " \t")
		if rest < 0 {
			return tline{}, fmt.Errorf("no value in %q", line)
		}
	} else {
		rest++
	}
	f := bytes.Fields(line[rest:])
	switch len(f) {
	case 1:
		return tline{body: bytes.TrimRight(line, " \t\r")}, nil
	case 2:
		ts, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil {
			return tline{}, fmt.Errorf("bad timestamp in %q", line)
		}
		end := bytes.LastIndex(line, f[1])
		return tline{body: bytes.TrimRight(line[:end], " \t"), ts: ts, hasTS: true}, nil
	}
	return tline{}, fmt.Errorf("want value [timestamp] in %q", line)
}

func metricName(line []byte) string {
	i := bytes.IndexAny(line, "{ \t")
	if i < 0 {
		return string(line)
	}
	return string(line[:i])
}

// labelValue returns the raw (escaped) value of a label, "" if absent.
func labelValue(line []byte, name string) string {
	open := bytes.IndexByte(line, '{')
	if open < 0 {
		return ""
	}
	i := open + 1
	for i < len(line) && line[i] != '}' {
		for i < len(line) && (line[i] == ',' || line[i] == ' ') {
			i++
		}
		eq := bytes.IndexByte(line[i:], '=')
		if eq < 0 || i+eq+1 >= len(line) || line[i+eq+1] != '"' {
			return ""
		}
		key := string(line[i : i+eq])
		j := i + eq + 2
		k := j
		for k < len(line) && line[k] != '"' {
			if line[k] == '\\' {
				k++
			}
			k++
		}
		if key == name {
			return string(line[j:min(k, len(line))])
		}
		i = k + 1
	}
	return ""
}

func lastPathElem(p string) string {
	if i := bytes.LastIndexByte([]byte(p), '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// podUID finds the UID in a pod cgroup path (.../pod<uid>, or ...-pod<uid>.slice).
func podUID(id string) string {
	i := bytes.LastIndex([]byte(id), []byte("pod"))
	if i < 0 {
		return ""
	}
	u := id[i+3:]
	if j := bytes.IndexAny([]byte(u), "/."); j >= 0 {
		u = u[:j]
	}
	return u
}

func randHex(r *rand.Rand, n int) string {
	b := make([]byte, (n+1)/2)
	r.Read(b)
	return hex.EncodeToString(b)[:n]
}

func randAlnum(r *rand.Rand, n int) string {
	const chars = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[r.Intn(len(chars))]
	}
	return string(b)
}

func randUID(r *rand.Rand) string {
	h := randHex(r, 32)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
