package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// writePair writes a self-signed certificate with serial and its key.
func writePair(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "relay"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Written aside and renamed, as a Secret volume update swaps files.
	for file, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: kder}} {
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
}

// serialSeen makes a new TLS connection and returns the serial of the
// certificate the server presented.
func serialSeen(t *testing.T, addr string) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestServingCertificateReloaded(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writePair(t, certFile, keyFile, 1)
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

	if s := serialSeen(t, addr); s != 1 {
		t.Fatalf("serial %d, want 1", s)
	}
	// Rotated on disk: the very next handshake has the new pair.
	writePair(t, certFile, keyFile, 2)
	if s := serialSeen(t, addr); s != 2 {
		t.Fatalf("after rotation: serial %d, want 2", s)
	}
	// A broken pair (key of another certificate) is not taken: the previous
	// one stays, once logged and counted, and is retried when files change.
	writePair(t, filepath.Join(dir, "other.crt"), keyFile, 3)
	for i := 0; i < 3; i++ {
		if s := serialSeen(t, addr); s != 2 {
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
	writePair(t, certFile, keyFile, 4)
	if s := serialSeen(t, addr); s != 4 {
		t.Fatalf("after a good rotation: serial %d, want 4", s)
	}
	// Files gone for a moment: the pair in use is served.
	os.Remove(certFile)
	if s := serialSeen(t, addr); s != 4 {
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
