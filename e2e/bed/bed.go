// Package bed is the end-to-end test bed of kubelet-meta-proxy: real etcd, a real
// kube-apiserver, fake kubelets serving real cAdvisor captures inside a network namespace,
// Prometheus with a remote-write receiver and an alert rule, Alertmanager routing by team to
// webhooks that the bed records, and the relay itself. Everything runs in a temp dir on
// free 127.0.0.1 ports (the apiserver and the kubelets on the bed's own netns addresses)
// and is torn down by Stop, on failure of Start and on SIGINT/SIGTERM.
//
//	b, err := bed.Start(ctx, bed.Options{Nodes: 3})
//	defer b.Stop()
//	r, err := b.StartRelay("--scrape-interval", "2s")
//	res, err := b.Query(ctx, `container_memory_working_set_bytes{namespace="frontend-service1"}`)
package bed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options of a bed. The zero value is a usable default (3 nodes, the README namespaces).
type Options struct {
	// Nodes is how many nodes (fake kubelets) start with the bed, named node-1...node-N.
	Nodes int
	// Namespaces and their labels. Default: DefaultNamespaces.
	Namespaces map[string]map[string]string
	// Teams that get an Alertmanager receiver each (matching team="<team>"). Default: the
	// values of the team label of Namespaces.
	Teams []string
	// Capture served by the fake kubelets (1_35, 1_28, 1_15 or a file). Default 1_35.
	Capture string
	// BinDir holds etcd, kube-apiserver, fake-kubelet and kubelet-meta-proxy. Default
	// <repo>/bin.
	BinDir string
	// Binaries, each overriding the BinDir/PATH default.
	EtcdBinary, APIServerBinary, FakeKubeletBinary, RelayBinary, PrometheusBinary, AlertmanagerBinary string
	// Dir is where everything lives; default a new temp dir, removed by Stop unless KeepDir.
	Dir     string
	KeepDir bool
	// ClusterRoleFile is the relay's ClusterRole. Default <repo>/deploy/kustomize/base/clusterrole.yaml
	// (built-in rules of docs/CONTRACTS.md if that file does not exist).
	ClusterRoleFile string
	// EvaluationInterval of Prometheus rules (default 1s).
	EvaluationInterval time.Duration
	// OutOfOrderWindow, if set, lets Prometheus accept out-of-order samples that far back.
	OutOfOrderWindow time.Duration
	// KubeletAuthCacheTTL is how long a fake kubelet caches authn/authz results (default 2s).
	KubeletAuthCacheTTL time.Duration
	// NoSignalHandler leaves SIGINT/SIGTERM alone (by default they stop the bed and exit).
	NoSignalHandler bool
	// Log receives progress lines (default: discarded).
	Log io.Writer
	// KubeOnly starts only etcd and the kube-apiserver (with the namespaces, the relay's
	// RBAC, token and kubeconfig), both on 127.0.0.1: no network namespace (so no root and
	// no ip command), no Prometheus, Alertmanager, webhook or fake kubelets. Nodes must be
	// 0; register Node objects for kubelets of your own with RegisterNode. Load tests use
	// it (e2e/loadbench).
	KubeOnly bool
	// KubeNetns, with KubeOnly, creates the network namespace too (root, the ip command) and
	// binds the kube-apiserver to its host-side address (HostIP, 198.18.S.1): unlike 127.0.0.1
	// the apiserver's node proxy accepts it (it refuses addresses that are not global
	// unicast), so kubelets of your own listening on HostIP can be scraped through it.
	KubeNetns bool
}

// DefaultNamespaces is the README story.
func DefaultNamespaces() map[string]map[string]string {
	return map[string]map[string]string{
		"frontend-service1":  {"team": "frontend"},
		"frontend-service2":  {"team": "frontend"},
		"backend-service":    {"team": "backend"},
		"unlabelled-service": {},
	}
}

// Names of the relay's RBAC objects.
const (
	RelayNamespace      = "kubelet-meta-proxy"
	RelayServiceAccount = "kubelet-meta-proxy"
	RelayClusterRole    = "kubelet-meta-proxy"
	// KubeletClientUser is the CN of the apiserver's kubelet client certificate.
	KubeletClientUser = "kube-apiserver-kubelet-client"
	// AlertName is the alert of the bed's rule file: it fires per (team, namespace) that has
	// container_memory_working_set_bytes series with a team label.
	AlertName = "TeamContainersRunning"
	// AlertExpr is its expression.
	AlertExpr = `count by (team, namespace) (container_memory_working_set_bytes{team!=""}) > 0`
)

// Bed is a running test bed.
type Bed struct {
	opts Options
	// Dir holds the configs, certificates, data and the logs (*.log) of every component.
	Dir string
	// Netns is the network namespace of the fake kubelets.
	Netns string
	// HostIP is the bed's address on the veth host side: the kube-apiserver listens there.
	HostIP string

	// APIServerURL, CAFile and the admin credentials.
	APIServerURL string
	CAFile       string
	AdminToken   string
	Admin        *rest.Config
	Client       kubernetes.Interface

	// RelayToken (a TokenRequest token of the relay's ServiceAccount), the same in
	// RelayTokenFile, and RelayKubeconfig using it.
	RelayToken      string
	RelayTokenFile  string
	RelayKubeconfig string

	PrometheusURL   string // http://127.0.0.1:port
	AlertmanagerURL string
	// RemoteWriteURL is Prometheus' remote-write receiver.
	RemoteWriteURL string
	// Webhook records what Alertmanager delivers to each team's receiver.
	Webhook *Webhook

	// Namespaces in the order the fake kubelets spread pods over them.
	Namespaces []string
	Teams      []string

	bin       binaries
	ns        *netns
	ca        *ca
	etcd      *proc
	apiserver *proc
	prom      *proc
	am        *proc
	certs     map[string][2]string
	etcdURL   string

	mu       sync.Mutex
	nodes    map[string]*Node
	nextIP   int
	relays   []*Relay
	extras   []*proc // Cortex, kube-state-metrics, extra Prometheus servers: started on demand
	stopOnce sync.Once
	sigStop  func()
}

type binaries struct {
	etcd, apiserver, fakeKubelet, relay, prometheus, alertmanager string
}

func (b *Bed) logf(format string, args ...any) {
	if b.opts.Log != nil {
		fmt.Fprintf(b.opts.Log, "bed: "+format+"\n", args...)
	}
}

// Start brings a bed up. On error everything started so far is torn down and the error
// carries the tails of the component logs.
func Start(ctx context.Context, opts Options) (_ *Bed, err error) {
	if opts.KubeNetns && !opts.KubeOnly {
		return nil, errors.New("bed: KubeNetns goes with KubeOnly")
	}
	if opts.KubeOnly {
		if opts.Nodes != 0 {
			return nil, errors.New("bed: KubeOnly starts no fake kubelets: Nodes must be 0 (use RegisterNode)")
		}
	}
	if !opts.KubeOnly || opts.KubeNetns {
		if os.Geteuid() != 0 {
			return nil, errors.New("the bed needs root (network namespaces)")
		}
		if _, err := exec.LookPath("ip"); err != nil {
			return nil, errors.New("the bed needs the ip command (iproute2)")
		}
	}
	if opts.Namespaces == nil {
		opts.Namespaces = DefaultNamespaces()
	}
	if opts.Capture == "" {
		opts.Capture = "1_35"
	}
	if opts.EvaluationInterval == 0 {
		opts.EvaluationInterval = time.Second
	}
	if opts.KubeletAuthCacheTTL == 0 {
		opts.KubeletAuthCacheTTL = 2 * time.Second
	}
	b := &Bed{opts: opts, nodes: map[string]*Node{}, certs: map[string][2]string{}, Webhook: newWebhook()}
	for ns := range opts.Namespaces {
		b.Namespaces = append(b.Namespaces, ns)
	}
	sort.Strings(b.Namespaces)
	b.Teams = opts.Teams
	if len(b.Teams) == 0 {
		for _, l := range opts.Namespaces {
			if t := l["team"]; t != "" && !slices.Contains(b.Teams, t) {
				b.Teams = append(b.Teams, t)
			}
		}
		sort.Strings(b.Teams)
	}
	if b.bin, err = findBinaries(opts); err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		if b.Dir, err = os.MkdirTemp("", "kmp-bed-"); err != nil {
			return nil, err
		}
	} else {
		b.Dir = opts.Dir
		if err := os.MkdirAll(b.Dir, 0o755); err != nil {
			return nil, err
		}
	}
	if !opts.NoSignalHandler {
		b.handleSignals()
	}
	start := time.Now()
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, b.LogTails(30))
			b.Stop()
		}
	}()
	type step struct {
		name string
		fn   func(context.Context) error
	}
	steps := []step{
		{"pki", b.setupPKI},
		{"netns", b.setupNetns},
		{"webhook", b.startWebhook},
		{"etcd", b.startEtcd},
		{"kube-apiserver", b.startAPIServer},
		{"objects", b.setupObjects},
		{"alertmanager", b.startAlertmanager},
		{"prometheus", b.startPrometheus},
	}
	if opts.KubeOnly {
		steps = []step{
			{"pki", b.setupPKI},
			{"loopback", func(context.Context) error { b.HostIP = "127.0.0.1"; return nil }},
			{"etcd", b.startEtcd},
			{"kube-apiserver", b.startAPIServer},
			{"objects", b.setupObjects},
		}
		if opts.KubeNetns {
			steps[1] = step{"netns", b.setupNetns}
		}
	}
	for _, s := range steps {
		t := time.Now()
		if err := s.fn(ctx); err != nil {
			return nil, fmt.Errorf("bed: %s: %w", s.name, err)
		}
		b.logf("%s up in %s", s.name, time.Since(t).Round(time.Millisecond))
	}
	for i := 1; i <= opts.Nodes; i++ {
		if _, err := b.AddNode(ctx, fmt.Sprintf("node-%d", i)); err != nil {
			return nil, err
		}
	}
	b.logf("up in %s (dir %s, netns %s)", time.Since(start).Round(time.Millisecond), b.Dir, b.Netns)
	return b, nil
}

func findBinaries(opts Options) (binaries, error) {
	binDir := opts.BinDir
	if binDir == "" {
		root, err := RepoRoot()
		if err != nil {
			return binaries{}, err
		}
		binDir = filepath.Join(root, "bin")
	}
	pick := func(override string, names ...string) string {
		if override != "" {
			return override
		}
		for _, n := range names {
			if p := filepath.Join(binDir, n); fileExists(p) {
				return p
			}
		}
		for _, n := range names {
			if p, err := exec.LookPath(n); err == nil {
				return p
			}
		}
		return filepath.Join(binDir, names[0])
	}
	bin := binaries{
		etcd:         pick(opts.EtcdBinary, "etcd"),
		apiserver:    pick(opts.APIServerBinary, "kube-apiserver"),
		fakeKubelet:  pick(opts.FakeKubeletBinary, "fake-kubelet"),
		relay:        pick(opts.RelayBinary, "kubelet-meta-proxy"),
		prometheus:   pick(opts.PrometheusBinary, "prometheus"),
		alertmanager: pick(opts.AlertmanagerBinary, "prometheus-alertmanager", "alertmanager"),
	}
	need := []string{bin.etcd, bin.apiserver, bin.fakeKubelet, bin.prometheus, bin.alertmanager}
	if opts.KubeOnly {
		need = need[:2]
	}
	var missing []string
	for _, p := range need {
		if !fileExists(p) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return bin, fmt.Errorf("bed: missing binaries %v (run hack/build-kube.sh and `go build -o bin/fake-kubelet ./e2e/cmd/fake-kubelet`; apt-get install prometheus prometheus-alertmanager)", missing)
	}
	return bin, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func (b *Bed) handleSignals() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	b.sigStop = func() { signal.Stop(c); close(done) }
	go func() {
		select {
		case s := <-c:
			fmt.Fprintf(os.Stderr, "bed: %v: tearing down\n", s)
			b.Stop()
			os.Exit(130)
		case <-done:
		}
	}()
}

func (b *Bed) setupPKI(context.Context) error {
	var err error
	if b.ca, err = newCA(b.Dir); err != nil {
		return err
	}
	b.CAFile = b.ca.file()
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	b.AdminToken = hex.EncodeToString(tok[:])
	return nil
}

func (b *Bed) setupNetns(ctx context.Context) error {
	n, err := newNetns(ctx)
	if err != nil {
		return err
	}
	b.ns, b.Netns, b.HostIP = n, n.name, n.hostIP
	return nil
}

// Stop tears everything down: relays, fake kubelets, Prometheus, Alertmanager, the apiserver,
// etcd, the webhook server, the netns and veth pair, and (unless KeepDir) the dir. Safe to
// call more than once and concurrently.
func (b *Bed) Stop() {
	b.stopOnce.Do(func() {
		if b.sigStop != nil {
			b.sigStop()
		}
		b.mu.Lock()
		relays := b.relays
		extras := b.extras
		var nodes []*Node
		for _, n := range b.nodes {
			nodes = append(nodes, n)
		}
		b.mu.Unlock()
		var wg sync.WaitGroup
		for _, r := range relays {
			wg.Go(func() { r.p.stop(10 * time.Second) })
		}
		for _, n := range nodes {
			wg.Go(func() { n.p.stop(3 * time.Second) })
		}
		for _, p := range append([]*proc{b.prom, b.am}, extras...) {
			if p != nil {
				wg.Go(func() { p.stop(10 * time.Second) })
			}
		}
		wg.Wait()
		for _, p := range []*proc{b.apiserver, b.etcd} {
			if p != nil {
				p.stop(3 * time.Second)
			}
		}
		b.Webhook.close()
		if b.ns != nil {
			if err := b.ns.delete(); err != nil {
				fmt.Fprintf(os.Stderr, "bed: delete netns %s: %v\n", b.ns.name, err)
			}
		}
		if !b.opts.KeepDir && b.opts.Dir == "" && b.Dir != "" {
			os.RemoveAll(b.Dir)
		}
		b.logf("stopped")
	})
}

// LogFiles lists the component logs.
func (b *Bed) LogFiles() []string {
	m, _ := filepath.Glob(filepath.Join(b.Dir, "*.log"))
	sort.Strings(m)
	return m
}

// LogTails returns the last n lines of every component log.
func (b *Bed) LogTails(n int) string {
	var sb strings.Builder
	for _, f := range b.LogFiles() {
		fmt.Fprintf(&sb, "----- %s (last %d lines) -----\n%s\n", filepath.Base(f), n, tail(f, n))
	}
	return sb.String()
}

func (b *Bed) logPath(name string) string { return filepath.Join(b.Dir, name+".log") }

func (b *Bed) newProc(name, path string, args ...string) *proc {
	return &proc{name: name, path: path, args: args, logPath: b.logPath(name)}
}

// newExtra is newProc for a component started on demand: Stop stops it with the bed.
func (b *Bed) newExtra(name, path string, args ...string) *proc {
	p := b.newProc(name, path, args...)
	b.mu.Lock()
	b.extras = append(b.extras, p)
	b.mu.Unlock()
	return p
}

// binary finds name in the bed's bin dir, then on PATH.
func (b *Bed) binary(name string) (string, error) {
	binDir := b.opts.BinDir
	if binDir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		binDir = filepath.Join(root, "bin")
	}
	if p := filepath.Join(binDir, name); fileExists(p) {
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("bed: %s not found in %s or PATH (hack/build-cortex.sh %s, or bed.BuildExtra)", name, binDir, name)
}

// httpClient is a plain client for the bed's HTTP endpoints.
var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
	Proxy: nil, DialContext: (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
}}
