package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
)

// The node proxy client speaks the protocol and asks for the encoding the flags say, and
// a gzipped answer reaches the scanner inflated. A real TLS server that offers h2 and
// gzips when asked stands in for the kube-apiserver.
func TestNodeProxyProtocolAndGzip(t *testing.T) {
	body := []byte("# TYPE container_cpu_usage_seconds_total counter\ncontainer_cpu_usage_seconds_total{namespace=\"a\"} 1 1700000000000\n")
	type seen struct {
		path, encoding string
		proto          int
	}
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.URL.Path, r.Header.Get("Accept-Encoding"), r.ProtoMajor})
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = zw.Write(body)
			_ = zw.Close()
			return
		}
		_, _ = w.Write(body)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	kubeconfig := writeKubeconfig(t, srv)

	for _, tc := range []struct {
		args      []string
		proto     int
		wantGzip  bool
		validates bool
	}{
		{nil, 1, false, true}, // the defaults
		{[]string{"--node-proxy-protocol=h2"}, 2, false, true},
		{[]string{"--node-proxy-protocol=h2", "--node-proxy-gzip"}, 2, true, true},
		{[]string{"--node-proxy-protocol=http/1.1", "--node-proxy-gzip=true"}, 1, true, true},
		{[]string{"--node-proxy-protocol=http2"}, 0, false, false},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var o commonOptions
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			o.kube.AddFlags(fs)
			if err := fs.Parse(append([]string{"--kubeconfig=" + kubeconfig}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			err := o.kube.Validate()
			if !tc.validates {
				if err == nil || !strings.Contains(err.Error(), "--node-proxy-protocol") {
					t.Fatalf("error %v, want one naming --node-proxy-protocol", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c, err := o.clients()
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			got = nil
			mu.Unlock()
			f := &scrape.APIServerFetcher{Client: c.proxy, Limit: 1 << 20}
			rc, _, err := f.Open(context.Background(), &scrape.Target{Node: "node-1", Path: "/metrics/cadvisor"})
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, body) {
				t.Errorf("body %q, want %q", b, body)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 1 {
				t.Fatalf("%d requests, want 1", len(got))
			}
			if g := got[0]; g.path != "/api/v1/nodes/node-1/proxy/metrics/cadvisor" || g.proto != tc.proto || g.encoding != map[bool]string{true: "gzip", false: "identity"}[tc.wantGzip] {
				t.Errorf("request %+v, want the node proxy path over HTTP/%d, gzip asked %v (else identity)", g, tc.proto, tc.wantGzip)
			}
		})
	}
}

// Node proxy flags set in kubelet mode are ignored, and the log says so.
func TestNodeProxyFlagsIgnoredInKubeletMode(t *testing.T) {
	for _, tc := range []struct {
		args []string
		warn []string
	}{
		{[]string{"--mode=kubelet"}, nil},
		{[]string{"--mode=kubelet", "--node-proxy-gzip"}, []string{"--node-proxy-gzip"}},
		{[]string{"--mode=kubelet", "--node-proxy-protocol=h2", "--node-proxy-gzip=false"}, []string{"--node-proxy-protocol", "--node-proxy-gzip"}},
		{[]string{"--mode=apiserver", "--node-proxy-protocol=h2"}, nil},
	} {
		var o kubeOptions
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		o.proxy.logIgnored(slog.New(slog.NewTextHandler(&buf, nil)), o.Mode)
		for _, w := range tc.warn {
			if !strings.Contains(buf.String(), w+" applies to --mode=apiserver only") {
				t.Errorf("%q: log %q, want a warning about %s", tc.args, buf.String(), w)
			}
		}
		if n := strings.Count(buf.String(), "level=WARN"); n != len(tc.warn) {
			t.Errorf("%q: %d warnings, want %d: %s", tc.args, n, len(tc.warn), buf.String())
		}
	}
}

func writeKubeconfig(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: %q, certificate-authority: %q}
users:
- name: u
  user: {token: t}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
`, srv.URL, caFile)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
