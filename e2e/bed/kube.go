package bed

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

func (b *Bed) startEtcd(ctx context.Context) error {
	client, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	peer, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	cu := fmt.Sprintf("http://127.0.0.1:%d", client)
	pu := fmt.Sprintf("http://127.0.0.1:%d", peer)
	b.etcd = b.newProc("etcd", b.bin.etcd,
		"--name=kmp-bed", "--data-dir="+filepath.Join(b.Dir, "etcd"),
		"--listen-client-urls="+cu, "--advertise-client-urls="+cu,
		"--listen-peer-urls="+pu, "--initial-advertise-peer-urls="+pu,
		"--initial-cluster=kmp-bed="+pu, "--unsafe-no-fsync", "--log-level=warn",
		"--quota-backend-bytes=1073741824")
	if err := b.etcd.start(); err != nil {
		return err
	}
	b.etcdURL = cu
	return waitFor(ctx, "etcd", 30*time.Second, b.etcd, httpOK(httpClient, cu+"/health", nil))
}

func (b *Bed) startAPIServer(ctx context.Context) error {
	port, err := freePort(b.HostIP)
	if err != nil {
		return err
	}
	b.APIServerURL = fmt.Sprintf("https://%s:%d", b.HostIP, port)
	ips := []net.IP{net.ParseIP(b.HostIP), net.ParseIP("127.0.0.1")}
	crt, key, err := b.ca.issue("apiserver", "kube-apiserver", nil, ips,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}, true, false)
	if err != nil {
		return err
	}
	kcrt, kkey, err := b.ca.issue("apiserver-kubelet-client", KubeletClientUser, nil, nil, nil, false, true)
	if err != nil {
		return err
	}
	saPub, saKey, err := writeSAKeys(b.Dir)
	if err != nil {
		return err
	}
	tokens := filepath.Join(b.Dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(b.AdminToken+",admin,admin,system:masters\n"), 0o600); err != nil {
		return err
	}
	b.apiserver = b.newProc("kube-apiserver", b.bin.apiserver,
		"--etcd-servers="+b.etcdURL,
		"--bind-address="+b.HostIP, fmt.Sprintf("--secure-port=%d", port),
		"--advertise-address="+b.HostIP,
		"--tls-cert-file="+crt, "--tls-private-key-file="+key,
		"--client-ca-file="+b.CAFile,
		"--token-auth-file="+tokens,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+saPub, "--service-account-signing-key-file="+saKey,
		"--kubelet-client-certificate="+kcrt, "--kubelet-client-key="+kkey,
		"--kubelet-certificate-authority="+b.CAFile,
		"--kubelet-preferred-address-types=InternalIP",
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--cert-dir="+filepath.Join(b.Dir, "apiserver-certs"),
		"--v=1")
	if err := b.apiserver.start(); err != nil {
		return err
	}
	b.Admin = &rest.Config{
		Host:            b.APIServerURL,
		BearerToken:     b.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: b.ca.certPEM},
		QPS:             100, Burst: 200,
	}
	if b.Client, err = kubernetes.NewForConfig(b.Admin); err != nil {
		return err
	}
	return b.waitAPIServer(ctx)
}

func (b *Bed) waitAPIServer(ctx context.Context) error {
	return waitFor(ctx, "kube-apiserver", 120*time.Second, b.apiserver, func(ctx context.Context) error {
		body, err := b.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%v: %s", err, body)
		}
		return nil
	})
}

// apiserverGrace is how long a stopping kube-apiserver gets after SIGTERM before SIGKILL: it
// stops listening at once but then can hang ~30s+ on open watches.
const apiserverGrace = 5 * time.Second

// RestartAPIServer stops the kube-apiserver (SIGTERM, SIGKILL after 5s) and starts it again
// on the same address.
func (b *Bed) RestartAPIServer(ctx context.Context) error {
	b.apiserver.stop(apiserverGrace)
	if err := b.apiserver.start(); err != nil {
		return err
	}
	return b.waitAPIServer(ctx)
}

// StopAPIServer stops the kube-apiserver; StartAPIServer starts it again.
func (b *Bed) StopAPIServer() { b.apiserver.stop(apiserverGrace) }

// StartAPIServer starts the kube-apiserver after StopAPIServer and waits until it is ready.
func (b *Bed) StartAPIServer(ctx context.Context) error {
	if b.apiserver.running() {
		return nil
	}
	if err := b.apiserver.start(); err != nil {
		return err
	}
	return b.waitAPIServer(ctx)
}

// DefaultRelayRules are the apiserver mode's rules of docs/CONTRACTS.md, used only if the
// ClusterRole file is missing.
func DefaultRelayRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes/proxy"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list", "watch"}},
	}
}

// The shipped ClusterRole files (relative to the repo root), each the single source of truth
// of its role: the relay's in apiserver mode (the bed's default) and in kubelet mode (the
// DaemonSet), what secure serving adds, and the role for scrapers of the secure endpoint.
const (
	APIServerRoleFile     = "deploy/kustomize/base/clusterrole.yaml"
	KubeletRoleFile       = "deploy/kustomize/overlays/daemonset/clusterrole.yaml"
	SecureMetricsRoleFile = "deploy/kustomize/components/secure-metrics/clusterrole.yaml"
	MetricsReaderRoleFile = "deploy/kustomize/components/secure-metrics/metrics-reader.yaml"
)

// ShippedClusterRole reads one of the shipped ClusterRole files (a path relative to the repo
// root) with a strict decode.
func ShippedClusterRole(file string) (*rbacv1.ClusterRole, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		return nil, err
	}
	var cr rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(data, &cr); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if cr.Kind != "ClusterRole" || cr.Name == "" || len(cr.Rules) == 0 {
		return nil, fmt.Errorf("%s: want a ClusterRole with rules, got %s %q", file, cr.Kind, cr.Name)
	}
	return &cr, nil
}

// ModeRules returns the rules of the relay's shipped ClusterRole for mode "apiserver" or
// "kubelet", for SetRelayRules.
func ModeRules(mode string) ([]rbacv1.PolicyRule, error) {
	file := map[string]string{"apiserver": APIServerRoleFile, "kubelet": KubeletRoleFile}[mode]
	if file == "" {
		return nil, fmt.Errorf("no mode %q", mode)
	}
	cr, err := ShippedClusterRole(file)
	if err != nil {
		return nil, err
	}
	return cr.Rules, nil
}

// BindClusterRole creates the ClusterRole cr (replacing one of that name) and binds it to the
// ServiceAccount namespace/name; the returned function deletes both.
func (b *Bed) BindClusterRole(ctx context.Context, cr *rbacv1.ClusterRole, namespace, name string) (func(), error) {
	c := b.Client.RbacV1()
	cr = cr.DeepCopy()
	cr.ResourceVersion = ""
	_ = c.ClusterRoles().Delete(ctx, cr.Name, metav1.DeleteOptions{})
	if _, err := c.ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: cr.Name + ":" + namespace + ":" + name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: namespace}},
	}
	_ = c.ClusterRoleBindings().Delete(ctx, crb.Name, metav1.DeleteOptions{})
	if _, err := c.ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.ClusterRoleBindings().Delete(ctx, crb.Name, metav1.DeleteOptions{})
		_ = c.ClusterRoles().Delete(ctx, cr.Name, metav1.DeleteOptions{})
	}, nil
}

// CreateServiceAccount creates a ServiceAccount (if missing) and returns a token of it.
func (b *Bed) CreateServiceAccount(ctx context.Context, namespace, name string) (string, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if _, err := b.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	return b.ServiceAccountToken(ctx, namespace, name)
}

// RelayClusterRoleFromFile reads the relay's ClusterRole (the single source of truth).
func RelayClusterRoleFromFile(path string) (*rbacv1.ClusterRole, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cr rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(data, &cr); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cr.Kind != "ClusterRole" || cr.Name != RelayClusterRole {
		return nil, fmt.Errorf("%s: want ClusterRole %s, got %s %s", path, RelayClusterRole, cr.Kind, cr.Name)
	}
	return &cr, nil
}

func (b *Bed) relayClusterRole() (*rbacv1.ClusterRole, error) {
	path := b.opts.ClusterRoleFile
	if path == "" {
		if root, err := RepoRoot(); err == nil {
			path = filepath.Join(root, "deploy", "kustomize", "base", "clusterrole.yaml")
		}
	}
	if path != "" && fileExists(path) {
		b.logf("relay ClusterRole from %s", path)
		return RelayClusterRoleFromFile(path)
	}
	if b.opts.ClusterRoleFile != "" {
		return nil, fmt.Errorf("ClusterRole file %s missing", b.opts.ClusterRoleFile)
	}
	b.logf("relay ClusterRole: %s not there, using the rules of docs/CONTRACTS.md", path)
	return &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: RelayClusterRole}, Rules: DefaultRelayRules()}, nil
}

// setupObjects creates the namespaces, the relay's RBAC, token and kubeconfig, and the
// bindings a real cluster has for the apiserver's kubelet client and the nodes.
func (b *Bed) setupObjects(ctx context.Context) error {
	c := b.Client
	for _, name := range append([]string{RelayNamespace}, b.Namespaces...) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: b.opts.Namespaces[name]}}
		if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	cr, err := b.relayClusterRole()
	if err != nil {
		return err
	}
	cr.ResourceVersion = ""
	if _, err := c.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil {
		return err
	}
	bindings := []*rbacv1.ClusterRoleBinding{
		{
			ObjectMeta: metav1.ObjectMeta{Name: RelayClusterRole},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: RelayClusterRole},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: RelayServiceAccount, Namespace: RelayNamespace}},
		},
		{ // what kubeadm binds: the apiserver may call every kubelet API
			ObjectMeta: metav1.ObjectMeta{Name: "kmp-bed:apiserver-kubelet-client"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
			Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: KubeletClientUser}},
		},
		{ // kubelets check tokens and permissions with TokenReview / SubjectAccessReview
			ObjectMeta: metav1.ObjectMeta{Name: "kmp-bed:nodes-auth-delegator"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"},
			Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: rbacv1.GroupName, Name: "system:nodes"}},
		},
	}
	for _, crb := range bindings {
		if _, err := c.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: RelayServiceAccount, Namespace: RelayNamespace}}
	if _, err := c.CoreV1().ServiceAccounts(RelayNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return err
	}
	if b.RelayToken, err = b.ServiceAccountToken(ctx, RelayNamespace, RelayServiceAccount); err != nil {
		return err
	}
	b.RelayTokenFile = filepath.Join(b.Dir, "relay.token")
	if err := os.WriteFile(b.RelayTokenFile, []byte(b.RelayToken), 0o600); err != nil {
		return err
	}
	b.RelayKubeconfig = filepath.Join(b.Dir, "relay.kubeconfig")
	return os.WriteFile(b.RelayKubeconfig, []byte(b.Kubeconfig("kubelet-meta-proxy", b.RelayToken)), 0o600)
}

// ServiceAccountToken creates (if needed) nothing: it asks the TokenRequest API for a 24h
// token of an existing ServiceAccount.
func (b *Bed) ServiceAccountToken(ctx context.Context, namespace, name string) (string, error) {
	exp := int64(24 * 3600)
	tr, err := b.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// Kubeconfig returns a kubeconfig for the bed's apiserver with a bearer token.
func (b *Bed) Kubeconfig(user, token string) string {
	ca := strings.TrimSpace(string(b.ca.certPEM))
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kmp-bed
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: kmp-bed
  context:
    cluster: kmp-bed
    user: %s
current-context: kmp-bed
`, b.APIServerURL, b64(ca), user, token, user)
}

// RelayClusterRole returns the relay's ClusterRole as it is in the apiserver now.
func (b *Bed) RelayClusterRole(ctx context.Context) (*rbacv1.ClusterRole, error) {
	return b.Client.RbacV1().ClusterRoles().Get(ctx, RelayClusterRole, metav1.GetOptions{})
}

// SetRelayRules replaces the rules of the relay's ClusterRole (e.g. without nodes/proxy).
func (b *Bed) SetRelayRules(ctx context.Context, rules []rbacv1.PolicyRule) error {
	cr, err := b.RelayClusterRole(ctx)
	if err != nil {
		return err
	}
	cr.Rules = rules
	_, err = b.Client.RbacV1().ClusterRoles().Update(ctx, cr, metav1.UpdateOptions{})
	return err
}

// WithoutResource returns rules with one resource (e.g. "nodes/proxy") removed.
func WithoutResource(rules []rbacv1.PolicyRule, resource string) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range rules {
		r = *r.DeepCopy()
		var res []string
		for _, x := range r.Resources {
			if x != resource {
				res = append(res, x)
			}
		}
		if len(res) == 0 {
			continue
		}
		r.Resources = res
		out = append(out, r)
	}
	return out
}

// SetNamespaceLabel sets (value != "") or removes (value == "") a label of a namespace.
func (b *Bed) SetNamespaceLabel(ctx context.Context, namespace, key, value string) error {
	ns, err := b.Client.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	if value == "" {
		delete(ns.Labels, key)
	} else {
		ns.Labels[key] = value
	}
	_, err = b.Client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
	return err
}

// ProxyGet does GET /api/v1/nodes/NODE/proxy/PATH through the apiserver with a bearer token
// (the relay's if token is "") and returns the status code and body.
func (b *Bed) ProxyGet(ctx context.Context, node, path, token string) (int, []byte, error) {
	if token == "" {
		token = b.RelayToken
	}
	cfg := rest.CopyConfig(b.Admin)
	cfg.BearerToken = token
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return 0, nil, err
	}
	u := fmt.Sprintf("%s/api/v1/nodes/%s/proxy/%s", b.APIServerURL, node, strings.TrimPrefix(path, "/"))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, err
	}
	return doRead(hc, req)
}
