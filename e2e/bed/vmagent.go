package bed

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// VMAgentOptions configure StartVMAgent.
type VMAgentOptions struct {
	// ConfigFile is the -promscrape.config file (scrape_configs).
	ConfigFile string
	// RemoteWriteURL is the -remoteWrite.url; vmagent sends Prometheus remote write 1.0
	// (-remoteWrite.forcePromProto) so any remote-write receiver reads it.
	RemoteWriteURL string
	// DataDir is the -remoteWrite.tmpDataPath (vmagent's file-backed send queue).
	DataDir string
	// Args are further vmagent flags.
	Args []string
}

// VMAgent is a running vmagent (VictoriaMetrics' scraping agent), which the load test
// measures the relay against.
type VMAgent struct {
	// URL serves vmagent's own /metrics and /health.
	URL     string
	LogFile string
	// Args are the flags it runs with.
	Args []string
	p    *proc
}

// StartVMAgent starts bin/vmagent (hack/build-vmagent.sh) and waits until /health answers.
func (b *Bed) StartVMAgent(ctx context.Context, opts VMAgentOptions) (*VMAgent, error) {
	bin, err := b.binary("vmagent")
	if err != nil {
		return nil, fmt.Errorf("%w (hack/build-vmagent.sh builds it)", err)
	}
	if opts.ConfigFile == "" || opts.RemoteWriteURL == "" || opts.DataDir == "" {
		return nil, fmt.Errorf("bed: StartVMAgent needs ConfigFile, RemoteWriteURL and DataDir")
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"-promscrape.config=" + opts.ConfigFile,
		"-remoteWrite.url=" + opts.RemoteWriteURL,
		"-remoteWrite.forcePromProto",
		"-remoteWrite.tmpDataPath=" + filepath.Clean(opts.DataDir),
		fmt.Sprintf("-httpListenAddr=127.0.0.1:%d", port),
	}, opts.Args...)
	v := &VMAgent{URL: fmt.Sprintf("http://127.0.0.1:%d", port), LogFile: b.logPath("vmagent"), Args: args}
	v.p = b.newExtra("vmagent", bin, args...)
	if err := v.p.start(); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, "vmagent", 60*time.Second, v.p, httpOK(httpClient, v.URL+"/health", nil)); err != nil {
		v.Stop()
		return nil, err
	}
	return v, nil
}

// PID of the vmagent process (0 if not running).
func (v *VMAgent) PID() int { return v.p.pid() }

// Stop stops vmagent (SIGTERM, then SIGKILL after 15s).
func (v *VMAgent) Stop() { v.p.stop(15 * time.Second) }

// Logs returns the last n lines of its log.
func (v *VMAgent) Logs(n int) string { return tail(v.LogFile, n) }

// VMAgentVersion is `vmagent -version` of the binary the bed would run.
func (b *Bed) VMAgentVersion() (string, error) {
	bin, err := b.binary("vmagent")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(bin, "-version").Output()
	return strings.TrimSpace(string(out)), err
}
