package server

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/testcert"
)

func TestServingCertificateReloaded(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	testcert.WritePair(t, certFile, keyFile, 1)
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	cfg, err := TLSConfig(certFile, keyFile, slog.New(slog.NewTextHandler(logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- New(Config{View: testView(t), Gatherer: reg, Ready: func() error { return nil }, TLS: cfg, Logger: discard()}).Run(ctx, ln)
	}()
	t.Cleanup(func() { cancel(); <-done })
	addr := ln.Addr().String()

	if s := testcert.ServedSerial(t, addr); s != 1 {
		t.Fatalf("serial %d, want 1", s)
	}
	// Rotated on disk: the very next handshake has the new pair.
	testcert.WritePair(t, certFile, keyFile, 2)
	if s := testcert.ServedSerial(t, addr); s != 2 {
		t.Fatalf("after rotation: serial %d, want 2", s)
	}
	// A broken pair (key of another certificate) is not taken: the previous
	// one stays, once logged and counted, and is retried when files change.
	testcert.WritePair(t, filepath.Join(dir, "other.crt"), keyFile, 3)
	for i := 0; i < 3; i++ {
		if s := testcert.ServedSerial(t, addr); s != 2 {
			t.Fatalf("after a broken rotation: serial %d, want 2 (kept)", s)
		}
	}
	r := reloadsOf(t, reg)
	if r["success"] != 1 || r["error"] != 1 {
		t.Fatalf("reloads %v, want 1 success and 1 error", r)
	}
	if n := strings.Count(logs.String(), "serving certificate not reloaded"); n != 1 {
		t.Fatalf("the broken pair was logged %d times, want once:\n%s", n, logs.String())
	}
	testcert.WritePair(t, certFile, keyFile, 4)
	if s := testcert.ServedSerial(t, addr); s != 4 {
		t.Fatalf("after a good rotation: serial %d, want 4", s)
	}
	// Files gone for a moment: the pair in use is served.
	os.Remove(certFile)
	if s := testcert.ServedSerial(t, addr); s != 4 {
		t.Fatalf("cert file missing: serial %d, want 4", s)
	}
	if v := testutil.ToFloat64(mustCollector(t, reg, "kubelet_meta_proxy_server_certificate_expiry_timestamp_seconds")); v < float64(time.Now().Unix()) {
		t.Errorf("expiry gauge %v", v)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := TLSConfig(filepath.Join(dir, "missing.crt"), filepath.Join(dir, "missing.key"), nil, nil); err == nil || !strings.Contains(err.Error(), "serving certificate file") {
		t.Fatalf("missing files: %v", err)
	}
	if _, err := TLSConfig(filepath.Join(dir, "a.crt"), "", nil, nil); err == nil {
		t.Fatal("a certificate without a key was accepted")
	}
	cfg, err := TLSConfig("", "", nil, nil)
	if err != nil || len(cfg.Certificates) != 1 {
		t.Fatalf("self-signed: %v", err)
	}
}

func reloadsOf(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "kubelet_meta_proxy_server_certificate_reloads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

// mustCollector returns the registered collector of a single-series metric
// as a gauge that testutil can read.
func mustCollector(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "copy"})
			g.Set(mf.GetMetric()[0].GetGauge().GetValue())
			return g
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}
