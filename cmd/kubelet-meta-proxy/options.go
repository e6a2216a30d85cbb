package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/klog/v2"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
)

const (
	modeAPIServer = "apiserver"
	modeKubelet   = "kubelet"

	serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// kubeOptions say how to reach Kubernetes and the kubelets.
type kubeOptions struct {
	Kubeconfig    string
	KubeAPIServer string
	Mode          string

	NodeSelector     string
	NodeNameOrIP     string
	NodeIP           string
	NodePort         int
	NodeCadvisorPath string

	KubeletCAFile             string
	KubeletInsecureSkipVerify bool
	KubeletTokenFile          string

	proxy nodeProxyOptions // nodeproxy_flags.go
}

func (o *kubeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "Kubeconfig file. Default: in-cluster config, else $KUBECONFIG or ~/.kube/config.")
	fs.StringVar(&o.KubeAPIServer, "kube-apiserver", "", "kube-apiserver host[:port] or URL, reached with the pod's service-account token and CA (the original tool's flag).")
	fs.StringVar(&o.Mode, "mode", modeAPIServer, `How to reach kubelets: "apiserver" (through the kube-apiserver node proxy, the central Deployment) or "kubelet" (straight to each node over HTTPS, the DaemonSet).`)
	fs.StringVar(&o.NodeSelector, "node-selector", "", "Label selector of the nodes to scrape (default all).")
	fs.StringVar(&o.NodeNameOrIP, "node-name-or-ip", "", "Scrape only this node (name or address). With $(NODE_NAME) a DaemonSet pod scrapes its own node.")
	fs.StringVar(&o.NodeIP, "node-ip", "", "Address to reach the kubelet at instead of the node's InternalIP (with --node-name-or-ip).")
	fs.IntVar(&o.NodePort, "node-port", 0, "Kubelet port (default: the Node's status.daemonEndpoints.kubeletEndpoint.Port, else 10250).")
	fs.StringVar(&o.NodeCadvisorPath, "node-cadvisor-path", "/metrics/cadvisor", "Kubelet path to scrape.")
	fs.StringVar(&o.KubeletCAFile, "kubelet-ca-file", "", "CA bundle that signed the kubelets' serving certificates (kubelet mode; default the service-account CA).")
	fs.BoolVar(&o.KubeletInsecureSkipVerify, "kubelet-insecure-skip-verify", false, "Do not verify kubelet serving certificates (kubelet mode).")
	fs.StringVar(&o.KubeletTokenFile, "kubelet-token-file", serviceAccountDir+"/token", "Bearer token sent to kubelets (kubelet mode); re-read as it rotates.")
	o.proxy.AddFlags(fs)
}

func (o *kubeOptions) Validate() error {
	var errs []error
	if o.Mode != modeAPIServer && o.Mode != modeKubelet {
		errs = append(errs, fmt.Errorf(`--mode=%q: want "apiserver" or "kubelet"`, o.Mode))
	}
	if err := o.proxy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, err := labels.Parse(o.NodeSelector); err != nil {
		errs = append(errs, fmt.Errorf("--node-selector=%q: %w", o.NodeSelector, err))
	}
	if o.NodePort < 0 || o.NodePort > 65535 {
		errs = append(errs, fmt.Errorf("--node-port=%d: want 0 (from the Node) or 1-65535", o.NodePort))
	}
	if !strings.HasPrefix(o.NodeCadvisorPath, "/") {
		errs = append(errs, fmt.Errorf("--node-cadvisor-path=%q: must start with /", o.NodeCadvisorPath))
	}
	if o.NodeIP != "" && net.ParseIP(o.NodeIP) == nil {
		errs = append(errs, fmt.Errorf("--node-ip=%q: not an IP address", o.NodeIP))
	}
	if o.KubeletInsecureSkipVerify && o.KubeletCAFile != "" {
		errs = append(errs, errors.New("--kubelet-insecure-skip-verify and --kubelet-ca-file: give one (verify with the CA, or explicitly not at all)"))
	}
	if o.NodeIP != "" && o.NodeNameOrIP == "" {
		errs = append(errs, errors.New("--node-ip needs --node-name-or-ip: one address cannot serve every node"))
	}
	if o.Kubeconfig != "" {
		if _, err := os.Stat(o.Kubeconfig); err != nil {
			errs = append(errs, fmt.Errorf("--kubeconfig: %w", err))
		}
	}
	return errors.Join(errs...)
}

// kubeletCAFile is the CA bundle kubelet serving certificates are verified
// with: --kubelet-ca-file, else the cluster CA of the service account (right
// when the kubelets' serving certificates come from the cluster CA through
// the CSR flow, serverTLSBootstrap: true). "" with --kubelet-insecure-skip-verify.
func (o *kubeOptions) kubeletCAFile() string {
	if o.KubeletInsecureSkipVerify {
		return ""
	}
	if o.KubeletCAFile != "" {
		return o.KubeletCAFile
	}
	return serviceAccountDir + "/ca.crt"
}

// logKubeletTLS says at start-up how kubelet certificates are checked; not
// checking them is a warning every time.
func (o *kubeOptions) logKubeletTLS(logger *slog.Logger) {
	o.proxy.logIgnored(logger, o.Mode)
	if o.Mode != modeKubelet {
		if o.KubeletInsecureSkipVerify || o.KubeletCAFile != "" {
			logger.Warn("--kubelet-ca-file and --kubelet-insecure-skip-verify apply to --mode=kubelet only: ignored", "mode", o.Mode)
		}
		return
	}
	if o.KubeletInsecureSkipVerify {
		logger.Warn("--kubelet-insecure-skip-verify: kubelet serving certificates are NOT verified; anyone who can intercept the connection to a kubelet receives the relay's token. Use --kubelet-ca-file (see deploy/README.md, kubelet TLS)")
		return
	}
	logger.Info("kubelet TLS: verifying kubelet serving certificates", "ca_file", o.kubeletCAFile())
}

// restConfig resolves how to reach the apiserver: --kubeconfig, then
// --kube-apiserver with the service account, then in-cluster, then the
// default kubeconfig loading rules.
func (o *kubeOptions) restConfig() (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	switch {
	case o.Kubeconfig != "":
		cfg, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	case o.KubeAPIServer != "":
		host := o.KubeAPIServer
		if !strings.Contains(host, "://") {
			host = "https://" + host
		}
		cfg = &rest.Config{Host: host, BearerTokenFile: serviceAccountDir + "/token",
			TLSClientConfig: rest.TLSClientConfig{CAFile: serviceAccountDir + "/ca.crt"}}
	default:
		cfg, err = rest.InClusterConfig()
		if err != nil {
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
			if err != nil {
				err = fmt.Errorf("no Kubernetes configuration: not in a cluster, and no --kubeconfig, --kube-apiserver or default kubeconfig (%w)", err)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = userAgent()
	return cfg, nil
}

// unthrottled is a copy of cfg for the node proxy: client-side rate limiting
// would stretch a round of hundreds of scrapes past the interval.
func unthrottled(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	return c
}

// scrapeOptions say how and what to scrape.
type scrapeOptions struct {
	Interval         time.Duration
	Timeout          time.Duration
	MaxConcurrency   int
	BodySizeLimit    string
	HonorTimestamps  bool
	Targets          []string
	TargetJob        string
	KubeletJob       string
	NodeLabel        string
	MetricsPathLabel string
	ShardIndex       int
	ShardCount       int
}

func (o *scrapeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&o.Interval, "scrape-interval", 30*time.Second, "How often every target is scraped.")
	fs.DurationVar(&o.Timeout, "scrape-timeout", 0, "Timeout of one scrape; at most --scrape-interval. Default min(10s, --scrape-interval), as Prometheus.")
	fs.IntVar(&o.MaxConcurrency, "max-concurrency", 16, "Most scrapes in flight at once.")
	fs.StringVar(&o.BodySizeLimit, "body-size-limit", "64Mi", "Largest payload accepted from one target (a quantity: 64Mi, 100M); 0 for no limit.")
	fs.BoolVar(&o.HonorTimestamps, "honor-timestamps", true, "Keep the timestamps the target writes (cAdvisor does); lines without one get the scrape time.")
	fs.StringArrayVar(&o.Targets, "target", nil, "Also scrape this plain Prometheus target URL, e.g. http://kube-state-metrics:8080/metrics (repeatable). Series with a namespace label are enriched too.")
	fs.StringVar(&o.TargetJob, "target-job", "kubelet-meta-proxy", "job label of --target series.")
	fs.StringVar(&o.KubeletJob, "kubelet-job", "kubelet", "job label of node series (kube-prometheus's kubelet job writes job=\"kubelet\").")
	fs.StringVar(&o.NodeLabel, "node-label", "node", "Name of the label holding the node's name on node series; empty leaves it out.")
	fs.StringVar(&o.MetricsPathLabel, "metrics-path-label", "metrics_path", "Name of the label holding the scraped path on node series; empty leaves it out.")
	fs.IntVar(&o.ShardIndex, "shard-index", -1, "This replica's shard, 0..--shard-count-1 (default: the ordinal of $POD_NAME, as in a StatefulSet, else 0).")
	fs.IntVar(&o.ShardCount, "shard-count", 1, "Replicas sharing the nodes; each node is scraped by exactly one (rendezvous hash of its name).")
}

var podOrdinal = regexp.MustCompile(`-(\d+)$`)

func (o *scrapeOptions) Validate() error {
	var errs []error
	if o.Interval <= 0 {
		errs = append(errs, fmt.Errorf("--scrape-interval=%s: must be positive", o.Interval))
	}
	if o.Timeout == 0 && o.Interval > 0 {
		o.Timeout = min(defaultScrapeTimeout, o.Interval) // Prometheus lowers its default likewise
	}
	if o.Timeout <= 0 || o.Timeout > o.Interval {
		errs = append(errs, fmt.Errorf("--scrape-timeout=%s: must be positive and at most --scrape-interval (%s)", o.Timeout, o.Interval))
	}
	if o.MaxConcurrency < 1 {
		errs = append(errs, fmt.Errorf("--max-concurrency=%d: must be at least 1", o.MaxConcurrency))
	}
	if _, err := o.bodyLimit(); err != nil {
		errs = append(errs, err)
	}
	if _, err := scrape.PlainTargets(o.Targets, o.TargetJob, o.MetricsPathLabel); err != nil {
		errs = append(errs, fmt.Errorf("--target %w", err))
	}
	for flag, name := range map[string]string{"--node-label": o.NodeLabel, "--metrics-path-label": o.MetricsPathLabel} {
		if name != "" && !model.IsValidLabelName(name) {
			errs = append(errs, fmt.Errorf("%s=%q: not a valid Prometheus label name", flag, name))
		}
	}
	if o.ShardCount < 1 {
		errs = append(errs, fmt.Errorf("--shard-count=%d: must be at least 1", o.ShardCount))
	}
	if _, err := o.shard(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (o *scrapeOptions) bodyLimit() (int64, error) {
	q, err := resource.ParseQuantity(o.BodySizeLimit)
	if err != nil || q.Sign() < 0 {
		return 0, fmt.Errorf("--body-size-limit=%q: want a size such as 64Mi or 100M", o.BodySizeLimit)
	}
	return q.Value(), nil
}

func (o *scrapeOptions) shard() (scrape.Shard, error) {
	idx := o.ShardIndex
	if idx < 0 {
		idx = 0
		if o.ShardCount > 1 {
			pod := os.Getenv("POD_NAME")
			m := podOrdinal.FindStringSubmatch(pod)
			if m == nil {
				return scrape.Shard{}, fmt.Errorf("--shard-count=%d without --shard-index: $POD_NAME=%q has no StatefulSet ordinal", o.ShardCount, pod)
			}
			idx, _ = strconv.Atoi(m[1])
		}
	}
	if idx >= o.ShardCount {
		return scrape.Shard{}, fmt.Errorf("shard index %d: must be below --shard-count=%d", idx, o.ShardCount)
	}
	return scrape.Shard{Index: idx, Count: o.ShardCount}, nil
}

// enrichOptions say which Namespace labels are added.
type enrichOptions struct {
	NamespaceLabels      string
	NamespaceAnnotations string
	LabelPrefix          string
	CacheSyncTimeout     time.Duration
}

func (o *enrichOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.NamespaceLabels, "namespace-labels", "team", "Namespace labels to add to its series, comma-separated; * takes all. Keys become label names: app.kubernetes.io/team -> app_kubernetes_io_team.")
	fs.StringVar(&o.NamespaceAnnotations, "namespace-annotations", "", "Namespace annotations to add likewise, comma-separated; * takes all.")
	fs.StringVar(&o.LabelPrefix, "label-prefix", "", "Prefix for the added label names, e.g. namespace_.")
	fs.DurationVar(&o.CacheSyncTimeout, "cache-sync-timeout", 2*time.Minute, "How long to wait for the Namespace and Node caches at start before exiting with an error.")
}

func (o *enrichOptions) Validate() error {
	var errs []error
	if o.LabelPrefix != "" && !model.IsValidLabelName(o.LabelPrefix) {
		errs = append(errs, fmt.Errorf("--label-prefix=%q: must itself be a valid label name start ([a-zA-Z_][a-zA-Z0-9_]*)", o.LabelPrefix))
	}
	if o.CacheSyncTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--cache-sync-timeout=%s: must be positive", o.CacheSyncTimeout))
	}
	return errors.Join(errs...)
}

func (o *enrichOptions) mapper() enrich.NamespaceMapper {
	la, lall := enrich.ParseAllowlist(o.NamespaceLabels)
	aa, aall := enrich.ParseAllowlist(o.NamespaceAnnotations)
	return enrich.NamespaceMapper{
		Labels:      enrich.KeyMapper{Prefix: o.LabelPrefix, Allow: la, AllowAll: lall},
		Annotations: enrich.KeyMapper{Prefix: o.LabelPrefix, Allow: aa, AllowAll: aall},
	}
}

// serveOptions say how the local endpoint is served.
type serveOptions struct {
	BindAddress string
	Port        int
	Secure      bool
	TLSCertFile string
	TLSKeyFile  string
	EnableHTTP2 bool
}

func (o *serveOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.BindAddress, "metrics-bind-address", "", "Address to serve on (default all interfaces).")
	fs.IntVar(&o.Port, "metrics-port", 8080, "Port of /metrics, /metrics/self, /healthz and /readyz.")
	fs.BoolVar(&o.Secure, "metrics-secure", false, "Serve over HTTPS and let in only callers whose token passes a TokenReview and a SubjectAccessReview for get on the path.")
	fs.StringVar(&o.TLSCertFile, "tls-cert-file", "", "Serving certificate for --metrics-secure (default: self-signed).")
	fs.StringVar(&o.TLSKeyFile, "tls-private-key-file", "", "Key of --tls-cert-file.")
	fs.BoolVar(&o.EnableHTTP2, "enable-http2", false, "Serve HTTP/2 on the secure endpoint (off by default, as in controller-runtime, because of the HTTP/2 rapid-reset CVEs).")
}

func (o *serveOptions) Validate() error {
	var errs []error
	if o.Port < 0 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("--metrics-port=%d: want 0-65535", o.Port))
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		errs = append(errs, errors.New("--tls-cert-file and --tls-private-key-file go together"))
	}
	if !o.Secure && o.TLSCertFile != "" {
		errs = append(errs, errors.New("--tls-cert-file needs --metrics-secure"))
	}
	return errors.Join(errs...)
}

func (o *serveOptions) address() string {
	return net.JoinHostPort(o.BindAddress, strconv.Itoa(o.Port))
}

// logOptions configure the one logger everything writes to.
type logOptions struct {
	Level  string
	Format string
}

func (o *logOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Level, "log-level", "info", "debug, info, warn or error.")
	fs.StringVar(&o.Format, "log-format", "text", "text or json.")
}

func (o *logOptions) Validate() error {
	var l slog.Level
	var errs []error
	if err := l.UnmarshalText([]byte(o.Level)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level=%q: want debug, info, warn or error", o.Level))
	}
	if o.Format != "text" && o.Format != "json" {
		errs = append(errs, fmt.Errorf("--log-format=%q: want text or json", o.Format))
	}
	return errors.Join(errs...)
}

// logger builds the logger and routes client-go's klog into it.
func (o *logOptions) logger() *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(o.Level))
	hopts := &slog.HandlerOptions{Level: l}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, hopts)
	if o.Format == "json" {
		h = slog.NewJSONHandler(os.Stderr, hopts)
	}
	logger := slog.New(h)
	klog.SetSlogLogger(logger.With("component", "client-go"))
	return logger
}
