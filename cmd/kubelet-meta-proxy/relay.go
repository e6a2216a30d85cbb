package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/kubeclient"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/version"
)

func userAgent() string { return version.UserAgent() }

// commonOptions are shared by run and scrape-once.
type commonOptions struct {
	kube    kubeOptions
	kubelet kubeletOptions
	scrape  scrapeOptions
	enrich  enrichOptions
	log     logOptions
	limits  limitsOptions
	pod     podOptions
}

// AddFlags registers the flags run and scrape-once share.
func (o *commonOptions) AddFlags(fs *pflag.FlagSet) {
	o.kube.AddFlags(fs)
	o.kubelet.AddFlags(fs)
	o.scrape.AddFlags(fs)
	o.limits.AddFlags(fs)
	o.enrich.AddFlags(fs)
	o.pod.AddFlags(fs)
	o.log.AddFlags(fs)
}

func (o *commonOptions) Validate() error {
	return errors.Join(o.kube.Validate(), o.kubelet.Validate(), o.scrape.Validate(), o.enrich.Validate(), o.log.Validate(), o.limits.Validate(), o.pod.Validate())
}

// pipeline is what run and scrape-once both build from the options.
type pipeline struct {
	clients                   *clients
	nodeFetcher, plainFetcher scrape.Fetcher
	nodeTargets               scrape.NodeTargetOptions
}

func (o *commonOptions) pipeline() (*pipeline, error) {
	c, err := o.clients()
	if err != nil {
		return nil, err
	}
	nodeFetcher, plainFetcher, err := o.fetchers(c)
	if err != nil {
		return nil, err
	}
	nodeOpts, err := o.nodeTargetOptions()
	if err != nil {
		return nil, err
	}
	return &pipeline{clients: c, nodeFetcher: nodeFetcher, plainFetcher: plainFetcher, nodeTargets: nodeOpts}, nil
}

// clients are the Kubernetes clients the relay uses.
type clients struct {
	config   *rest.Config
	kube     *kubeclient.Client
	metadata metadata.Interface
	proxy    rest.Interface // core/v1 without client-side rate limiting
}

func (o *commonOptions) clients() (*clients, error) {
	cfg, err := o.kube.restConfig()
	if err != nil {
		return nil, err
	}
	kc, err := kubeclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	pc, err := kubeclient.NewForConfig(o.kube.proxy.apply(unthrottled(cfg)))
	if err != nil {
		return nil, err
	}
	return &clients{config: cfg, kube: kc, metadata: mc, proxy: pc.CoreV1()}, nil
}

func (o *commonOptions) nodeTargetOptions() (scrape.NodeTargetOptions, error) {
	shard, err := o.scrape.shard()
	if err != nil {
		return scrape.NodeTargetOptions{}, err
	}
	eps, err := o.kubelet.endpoints(o.kube.NodeCadvisorPath)
	if err != nil {
		return scrape.NodeTargetOptions{}, err
	}
	return scrape.NodeTargetOptions{
		Endpoints:        eps,
		Service:          o.kubelet.Service,
		PortName:         o.kubelet.PortName,
		Direct:           o.kube.Mode == modeKubelet,
		Path:             o.kube.NodeCadvisorPath,
		Port:             o.kube.NodePort,
		Address:          o.kube.NodeIP,
		NameOrIP:         o.kube.NodeNameOrIP,
		Job:              o.scrape.KubeletJob,
		MetricsPathLabel: o.scrape.MetricsPathLabel,
		NodeLabel:        o.scrape.NodeLabel,
		Shard:            shard,
	}, nil
}

// fetchers returns the fetcher for nodes (by mode) and for plain targets.
func (o *commonOptions) fetchers(c *clients) (node, plain scrape.Fetcher, err error) {
	limit, err := o.scrape.bodyLimit()
	if err != nil {
		return nil, nil, err
	}
	plainClient := &http.Client{Transport: newTransport(nil)}
	plainClient.Transport = userAgentTransport{plainClient.Transport}
	plain = &scrape.HTTPFetcher{Client: plainClient, Limit: limit, Permission: "access to the --target URL"}
	if o.kube.Mode == modeAPIServer {
		return &scrape.APIServerFetcher{Client: c.proxy, Limit: limit}, plain, nil
	}
	// Kubelet mode: the pod's service-account token (re-read as it rotates),
	// verifying the kubelet's certificate against a CA.
	ca := o.kube.kubeletCAFile()
	kcfg := &rest.Config{
		Host:            "https://kubelet.invalid", // requests carry full URLs
		BearerTokenFile: o.kube.KubeletTokenFile,
		UserAgent:       userAgent(),
		// HTTP/1.1 only: a scrape is one large response on its own
		// connection, and HTTP/2 would add a copy through its stream pipe
		// plus flow-control frames (WINDOW_UPDATE writes) for nothing; in
		// the load benchmark its read loop was 12% of the relay's CPU.
		TLSClientConfig: rest.TLSClientConfig{CAFile: ca, Insecure: o.kube.KubeletInsecureSkipVerify, NextProtos: []string{"http/1.1"}},
		// A DaemonSet pod scrapes the kubelet on its own node: gzip would
		// cost CPU on both ends to save traffic that never leaves the host
		// (un-gzipping alone is about 1 µs per cAdvisor sample).
		DisableCompression: true,
		// Socket reads of up to 256 KiB under TLS, rather than one record's.
		Dial: scrape.DialBuffered(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}),
	}
	hc, err := rest.HTTPClientFor(kcfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubelet client (--kubelet-ca-file, --kubelet-token-file): %w", err)
	}
	return &scrape.HTTPFetcher{Client: hc, Limit: limit, Permission: kubeletPermission(o.kube.NodeCadvisorPath)}, plain, nil
}

// kubeletPermission is what the kubelet checks for a GET of path (its
// authorizer maps /metrics/* to nodes/metrics, /stats/* to nodes/stats,
// /logs/* to nodes/log, /spec/* to nodes/spec and anything else, /pods
// included, to nodes/proxy).
func kubeletPermission(path string) string {
	sub := "proxy"
	for _, p := range []struct{ prefix, sub string }{{"/metrics", "metrics"}, {"/stats", "stats"}, {"/logs", "log"}, {"/spec", "spec"}} {
		if path == p.prefix || strings.HasPrefix(path, p.prefix+"/") {
			sub = p.sub
			break
		}
	}
	return "get nodes/" + sub
}

func newTransport(_ *rest.Config) http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 4
	t.IdleConnTimeout = 2 * time.Minute
	return t
}

type userAgentTransport struct{ next http.RoundTripper }

func (t userAgentTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", userAgent())
	return t.next.RoundTrip(r)
}

// plainTargets are the --target URLs.
func (o *commonOptions) plainTargets() []*scrape.Target {
	out, _ := scrape.PlainTargets(o.scrape.Targets, o.scrape.TargetJob, o.scrape.MetricsPathLabel) // validated
	return out
}
