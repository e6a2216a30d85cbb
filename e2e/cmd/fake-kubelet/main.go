// Command fake-kubelet serves real kubelet captures like a kubelet (HTTPS, client-certificate
// or TokenReview authentication, SubjectAccessReview authorization) for the e2e test bed.
// The bed runs one per node inside its network namespace.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/fakekubelet"
)

func main() {
	var cfg fakekubelet.Config
	var namespaces string
	flag.StringVar(&cfg.NodeName, "node-name", "", "node name (for authorization)")
	flag.StringVar(&cfg.Listen, "listen", "", "host:port to serve HTTPS on")
	flag.StringVar(&cfg.CertFile, "tls-cert-file", "", "serving certificate")
	flag.StringVar(&cfg.KeyFile, "tls-private-key-file", "", "serving key")
	flag.StringVar(&cfg.ClientCAFile, "client-ca-file", "", "CA of accepted client certificates")
	flag.StringVar(&cfg.APIServer, "apiserver", "", "kube-apiserver URL for TokenReview/SubjectAccessReview")
	flag.StringVar(&cfg.APIServerCA, "apiserver-ca-file", "", "kube-apiserver CA")
	flag.StringVar(&cfg.APICertFile, "apiserver-cert-file", "", "client certificate for the apiserver (the node's)")
	flag.StringVar(&cfg.APIKeyFile, "apiserver-key-file", "", "client key for the apiserver")
	flag.StringVar(&cfg.Capture, "capture", "1_35", "cAdvisor capture: 1_35, 1_28, 1_15 or a file")
	flag.StringVar(&namespaces, "namespaces", "", "comma-separated namespaces the capture's pods are spread over")
	flag.IntVar(&cfg.Offset, "offset", 0, "rotation of the pod to namespace round robin")
	flag.DurationVar(&cfg.CacheTTL, "auth-cache-ttl", 5*time.Second, "how long authentication/authorization results are cached")
	flag.BoolVar(&cfg.DisableGzip, "disable-gzip", false, "never gzip responses")
	flag.Parse()
	if cfg.NodeName == "" || cfg.Listen == "" || cfg.CertFile == "" || cfg.KeyFile == "" {
		fmt.Fprintln(os.Stderr, "fake-kubelet: --node-name, --listen, --tls-cert-file and --tls-private-key-file are required")
		os.Exit(2)
	}
	if namespaces != "" {
		cfg.Namespaces = strings.Split(namespaces, ",")
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	s, err := fakekubelet.New(cfg)
	if err != nil {
		cfg.Logger.Error("start", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := s.ListenAndServe(ctx); err != nil {
		cfg.Logger.Error("serve", "err", err)
		os.Exit(1)
	}
}
