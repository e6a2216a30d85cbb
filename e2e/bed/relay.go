package bed

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Relay is a running kubelet-meta-proxy.
type Relay struct {
	// Args are the command line (after the binary).
	Args []string
	Port int
	// BaseURL is http://127.0.0.1:Port (https:// with --metrics-secure); MetricsURL its
	// /metrics.
	BaseURL    string
	MetricsURL string
	LogFile    string
	p          *proc
	client     *http.Client
}

// secureClient talks to a relay with --metrics-secure: its serving certificate is its own
// (self-signed or the test's), so it is not verified here; tests that care check it.
var secureClient = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
	Proxy: nil, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true,
}}

// RelayDefaults are the flags StartRelay passes unless args set them (plus --scrape-timeout,
// which defaults to the scrape interval).
func (b *Bed) RelayDefaults(port int) []string {
	return []string{
		"--kubeconfig", b.RelayKubeconfig,
		"--scrape-interval", "5s",
		"--namespace-labels", "team",
		"--metrics-bind-address", "127.0.0.1",
		"--metrics-port", fmt.Sprint(port),
		"--remote-write-url", b.RemoteWriteURL,
	}
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		a = "-" + strings.TrimLeft(a, "-")
		if a == "-"+name || strings.HasPrefix(a, "-"+name+"=") {
			return true
		}
	}
	return false
}

// flagValue returns the last value of a flag given as --name V, --name=V, -name V or -name=V.
func flagValue(args []string, name string) string {
	v := ""
	for i, a := range args {
		a = "-" + strings.TrimLeft(a, "-")
		if x, ok := strings.CutPrefix(a, "-"+name+"="); ok {
			v = x
		} else if a == "-"+name && i+1 < len(args) {
			v = args[i+1]
		}
	}
	return v
}

// StartRelay runs `kubelet-meta-proxy run` with the bed's defaults (RelayDefaults) for every
// flag args does not set, plus args, and waits until its /healthz answers 200. The binary is
// Options.RelayBinary or bin/kubelet-meta-proxy.
func (b *Bed) StartRelay(ctx context.Context, args ...string) (*Relay, error) {
	if !fileExists(b.bin.relay) {
		return nil, fmt.Errorf("relay binary %s missing: make build (or go build -o bin/kubelet-meta-proxy ./cmd/kubelet-meta-proxy)", b.bin.relay)
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	full := []string{"run"}
	defs := b.RelayDefaults(port)
	// The scrape timeout must not exceed the interval: default it to the interval.
	if !hasFlag(args, "scrape-timeout") {
		interval := "5s"
		if v := flagValue(args, "scrape-interval"); v != "" {
			interval = v
		}
		full = append(full, "--scrape-timeout", interval)
	}
	for i := 0; i < len(defs); i += 2 {
		// A --config.file may configure remote write itself; the relay refuses it given both ways.
		if defs[i] == "--remote-write-url" && hasFlag(args, "config.file") {
			continue
		}
		if !hasFlag(args, strings.TrimLeft(defs[i], "-")) {
			full = append(full, defs[i], defs[i+1])
		}
	}
	full = append(full, args...)
	if v := flagValue(args, "metrics-port"); v != "" {
		fmt.Sscan(v, &port)
	}
	b.mu.Lock()
	name := fmt.Sprintf("relay-%d", len(b.relays)+1)
	b.mu.Unlock()
	r := &Relay{Args: full, Port: port, BaseURL: fmt.Sprintf("http://127.0.0.1:%d", port), client: httpClient}
	if hasFlag(args, "metrics-secure") {
		r.BaseURL, r.client = fmt.Sprintf("https://127.0.0.1:%d", port), secureClient
	}
	r.MetricsURL = r.BaseURL + "/metrics"
	r.p = b.newProc(name, b.bin.relay, full...)
	r.LogFile = r.p.logPath
	if err := r.p.start(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.relays = append(b.relays, r)
	b.mu.Unlock()
	if err := waitFor(ctx, name, 60*time.Second, r.p, httpOK(r.client, r.BaseURL+"/healthz", nil)); err != nil {
		r.p.stop(5 * time.Second)
		return nil, fmt.Errorf("%w\n%s", err, tail(r.LogFile, 40))
	}
	return r, nil
}

// Stop stops the relay (SIGTERM, then SIGKILL after 15s).
func (r *Relay) Stop() { r.p.stop(15 * time.Second) }

// Kill kills the relay at once.
func (r *Relay) Kill() { r.p.kill() }

// Running reports whether the relay process is up.
func (r *Relay) Running() bool { return r.p.running() }

// Restart stops and starts the relay with the same arguments.
func (r *Relay) Restart(ctx context.Context) error {
	r.Stop()
	if err := r.p.start(); err != nil {
		return err
	}
	return waitFor(ctx, "relay", 60*time.Second, r.p, httpOK(r.client, r.BaseURL+"/healthz", nil))
}

// Get fetches a path of the relay ("/metrics", "/metrics?node=node-1", "/readyz").
func (r *Relay) Get(ctx context.Context, path string) (int, []byte, error) {
	return r.GetWithToken(ctx, path, "")
}

// GetWithToken fetches a path with a bearer token ("" for none), for --metrics-secure.
func (r *Relay) GetWithToken(ctx context.Context, path, token string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.BaseURL+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return doRead(r.client, req)
}

// Exited is closed when the relay process has exited.
func (r *Relay) Exited() <-chan struct{} { return r.p.exited() }

// Logs returns the last n lines of the relay's log.
func (r *Relay) Logs(n int) string { return tail(r.LogFile, n) }

// tlsClient trusts the bed's CA (for the fake kubelets).
func (b *Bed) tlsClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	pool.AddCert(b.ca.cert)
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}, nil
}

// KubeletModeArgs are the relay flags for direct kubelet mode against one node: token auth
// with the relay's ServiceAccount token, the fake kubelets' serving CA.
func (b *Bed) KubeletModeArgs(node string) []string {
	return []string{
		"--mode=kubelet", "--node-name-or-ip=" + node,
		"--kubelet-ca-file=" + b.CAFile, "--kubelet-token-file=" + b.RelayTokenFile,
	}
}

// PID is the relay's process id (0 if it is not running), e.g. to read /proc/PID/stat.
func (r *Relay) PID() int { return r.p.pid() }
