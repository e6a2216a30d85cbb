package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/remotewrite"

	"k8s.io/client-go/util/cert"
)

// build runs Validate and returns the Config it built.
func build(o *remoteWriteOptions) (remotewrite.Config, error) {
	err := o.Validate()
	return o.Config(), err
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeCert writes a self-signed certificate and its key as PEM files.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	c, k, err := cert.GenerateSelfSignedCertKey("relay", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "tls.crt", string(c)), writeFile(t, dir, "tls.key", string(k))
}

func TestOptionsDisabledWithoutEndpoints(t *testing.T) {
	o := defaultRemoteWriteOptions()
	cfg, err := build(&o)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Enabled() {
		t.Fatal("enabled without any endpoint")
	}
}

func TestOptionsFlagsAndFile(t *testing.T) {
	dir := t.TempDir()
	token := writeFile(t, dir, "token", "tok\n")
	password := writeFile(t, dir, "password", "pw")
	cert, key := writeCert(t, dir)
	file := writeFile(t, dir, "rw.yaml", `
endpoints:
  - url: https://mimir.example/api/v1/push
    name: mimir-team-a
    headers: {x-scope-orgid: team-a}
    basic_auth: {username: relay, password_file: `+password+`}
    tls: {ca_file: `+cert+`, cert_file: `+cert+`, key_file: `+key+`}
    timeout: 7s
    queue: {shards: 8, batch_send_deadline: 1s}
  - url: http://thanos.example/api/v1/receive
`)
	o := defaultRemoteWriteOptions()
	o.URLs = []string{"https://prom.example/api/v1/write"}
	o.ConfigFile = file
	o.Endpoint.BearerTokenFile = token
	o.Endpoint.TLS.CAFile = cert
	o.Endpoint.Queue.Capacity = 5000
	o.Endpoint.Timeout = 3 * time.Second
	o.Headers = []string{"X-Scope-OrgID=flags"}
	o.ExternalLabels = []string{"cluster=prod", "__replica__=relay-0"}
	cfg, err := build(&o)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Enabled() || len(cfg.Endpoints) != 3 {
		t.Fatalf("endpoints: %+v", cfg.Endpoints)
	}
	if want := []model.Label{{Name: "__replica__", Value: "relay-0"}, {Name: "cluster", Value: "prod"}}; len(o.externalLabels()) != 2 ||
		o.externalLabels()[0] != want[0] || o.externalLabels()[1] != want[1] {
		t.Fatalf("external labels %v, want sorted %v", o.externalLabels(), want)
	}

	flag, mimir, thanos := cfg.Endpoints[0], cfg.Endpoints[1], cfg.Endpoints[2]
	if flag.BearerTokenFile != token || flag.Headers["X-Scope-Orgid"] != "flags" || flag.Timeout != 3*time.Second ||
		flag.Queue.Capacity != 5000 || flag.TLS.CAFile != cert {
		t.Errorf("flag endpoint: %+v", flag)
	}
	if mimir.Name != "mimir-team-a" || mimir.Headers["X-Scope-Orgid"] != "team-a" || mimir.BearerTokenFile != "" ||
		mimir.BasicAuth.Username != "relay" || mimir.TLS.KeyFile != key || mimir.Timeout != 7*time.Second {
		t.Errorf("file endpoint: %+v", mimir)
	}
	// Queue settings: the file's where given, the flags' otherwise.
	if q := mimir.Queue; q.Shards != 8 || q.BatchSendDeadline != time.Second || q.Capacity != 5000 ||
		q.MaxSamplesPerSend != remotewrite.DefaultMaxSamplesPerSend || q.MinBackoff != remotewrite.DefaultMinBackoff {
		t.Errorf("file endpoint queue: %+v", q)
	}
	// Credentials, TLS and headers are never inherited from the flags.
	if thanos.BearerTokenFile != "" || thanos.TLS.CAFile != "" || len(thanos.Headers) != 0 || thanos.Timeout != 3*time.Second {
		t.Errorf("second file endpoint inherited too much or too little: %+v", thanos)
	}
	if _, err := remotewrite.New(cfg, slog.New(slog.DiscardHandler), nil); err != nil {
		t.Fatal(err)
	}
}

func TestConfigErrorsNameEndpointAndField(t *testing.T) {
	dir := t.TempDir()
	token := writeFile(t, dir, "token", "tok")
	empty := writeFile(t, dir, "empty", "\n")
	notPEM := writeFile(t, dir, "ca.crt", "hello")
	for _, tc := range []struct {
		name  string
		opts  func(*remoteWriteOptions)
		wants []string
	}{
		{"bad scheme", func(o *remoteWriteOptions) { o.URLs = []string{"ftp://x/y"} },
			[]string{`"ftp://x/y" (--remote-write-url #1)`, "--remote-write-url", "scheme"}},
		{"credentials in URL", func(o *remoteWriteOptions) { o.URLs = []string{"https://u:p@x/y"} },
			[]string{"must not carry credentials"}},
		{"no host", func(o *remoteWriteOptions) { o.URLs = []string{"http:///push"} }, []string{"has no host"}},
		{"duplicate URL", func(o *remoteWriteOptions) { o.URLs = []string{"http://x/y", "http://x/y"} },
			[]string{"#2", "distinct name"}},
		{"reserved header", func(o *remoteWriteOptions) {
			o.URLs = []string{"http://x"}
			o.Headers = []string{"Content-Type=text/plain"}
		},
			[]string{"--remote-write-header", "Content-Type", "cannot be overridden"}},
		{"authorization header", func(o *remoteWriteOptions) {
			o.URLs = []string{"http://x"}
			o.Headers = []string{"authorization=Bearer x"}
		},
			[]string{"bearer_token_file or basic_auth"}},
		{"header without value", func(o *remoteWriteOptions) { o.URLs = []string{"http://x"}; o.Headers = []string{"X-A"} },
			[]string{"--remote-write-header", "Name=value"}},
		{"header control char", func(o *remoteWriteOptions) { o.URLs = []string{"http://x"}; o.Headers = []string{"X-A=a\nb"} },
			[]string{"control character"}},
		{"token and basic auth", func(o *remoteWriteOptions) {
			o.URLs = []string{"http://x"}
			o.Endpoint.BearerTokenFile = token
			o.Endpoint.BasicAuth = remotewrite.BasicAuth{Username: "u", PasswordFile: token}
		}, []string{"--remote-write-bearer-token-file", "cannot be combined"}},
		{"missing token file", func(o *remoteWriteOptions) {
			o.URLs = []string{"http://x"}
			o.Endpoint.BearerTokenFile = "/nonexistent/token"
		},
			[]string{"--remote-write-bearer-token-file", "no such file"}},
		{"empty token file", func(o *remoteWriteOptions) { o.URLs = []string{"http://x"}; o.Endpoint.BearerTokenFile = empty },
			[]string{"is empty"}},
		{"username without password", func(o *remoteWriteOptions) { o.URLs = []string{"http://x"}; o.Endpoint.BasicAuth.Username = "u" },
			[]string{"--remote-write-basic-auth-password-file", "required"}},
		{"CA not PEM", func(o *remoteWriteOptions) { o.URLs = []string{"https://x"}; o.Endpoint.TLS.CAFile = notPEM },
			[]string{"--remote-write-ca-file", "no PEM certificate"}},
		{"cert without key", func(o *remoteWriteOptions) { o.URLs = []string{"https://x"}; o.Endpoint.TLS.CertFile = notPEM },
			[]string{"--remote-write-key-file", "required"}},
		{"TLS on http", func(o *remoteWriteOptions) { o.URLs = []string{"http://x"}; o.Endpoint.TLS.InsecureSkipVerify = true },
			[]string{"URL uses http"}},
		{"zero timeout", func(o *remoteWriteOptions) { o.URLs = []string{"http://x"}; o.Endpoint.Timeout = 0 },
			[]string{"--remote-write-timeout", "positive"}},
		{"queue", func(o *remoteWriteOptions) {
			o.URLs = []string{"http://x"}
			o.Endpoint.Queue = remotewrite.QueueConfig{Capacity: 2, Shards: 4, MaxSamplesPerSend: 0, BatchSendDeadline: 0, MinBackoff: time.Second, MaxBackoff: time.Millisecond}
		}, []string{"--remote-write-queue-capacity", "--max-samples-per-send", "--batch-send-deadline", "--max-backoff"}},
		{"too many shards", func(o *remoteWriteOptions) { o.URLs = []string{"http://x"}; o.Endpoint.Queue.Shards = 5000 },
			[]string{"--remote-write-shards", "between 1 and 1024"}},
		{"external label syntax", func(o *remoteWriteOptions) { o.ExternalLabels = []string{"cluster"} }, []string{"--external-label", "name=value"}},
		{"external label name", func(o *remoteWriteOptions) { o.ExternalLabels = []string{"my-cluster=x"} }, []string{"invalid label name"}},
		{"external label empty", func(o *remoteWriteOptions) { o.ExternalLabels = []string{"cluster="} }, []string{"empty value"}},
		{"external label twice", func(o *remoteWriteOptions) { o.ExternalLabels = []string{"a=1", "a=2"} }, []string{"more than once"}},
		{"external __name__", func(o *remoteWriteOptions) { o.ExternalLabels = []string{"__name__=x"} }, []string{"metric name"}},
		{"negative shutdown timeout", func(o *remoteWriteOptions) { o.ShutdownTimeout = -time.Second }, []string{"--shutdown-timeout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := defaultRemoteWriteOptions()
			tc.opts(&o)
			_, err := build(&o)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		wants      []string
	}{
		{"misspelt field", "endpoints:\n- url: http://x\n  timout: 3s\n", []string{"unknown field", "timout"}},
		{"no endpoints", "endpoints: []\n", []string{"no endpoint"}},
		{"bad duration", "endpoints:\n- url: http://x\n  timeout: soon\n", []string{"soon"}},
		{"numeric duration", "endpoints:\n- url: http://x\n  timeout: 30\n", []string{"duration string"}},
		{"duplicate header", "endpoints:\n- url: http://x\n  headers: {X-A: a, x-a: b}\n", []string{"endpoints[0]", "headers", "more than once"}},
		{"field error names file and index", "endpoints:\n- url: http://x\n- url: http://y\n  queue: {shards: -1}\n",
			[]string{"rw.yaml: endpoints[1]", "queue.shards"}},
		{"duplicate names", "endpoints:\n- {url: http://x, name: a}\n- {url: http://y, name: a}\n", []string{"distinct name"}},
		{"not YAML", "endpoints: [", []string{"rw.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := defaultRemoteWriteOptions()
			o.ConfigFile = writeFile(t, dir, "rw.yaml", tc.yaml)
			_, err := build(&o)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
	o := defaultRemoteWriteOptions()
	o.ConfigFile = filepath.Join(dir, "missing.yaml")
	if _, err := build(&o); err == nil || !strings.Contains(err.Error(), "--remote-write-config") {
		t.Fatalf("missing file: %v", err)
	}
}
