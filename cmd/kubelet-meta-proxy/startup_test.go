package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/kubeclient"
)

func versionClient(t *testing.T, host string) rest.Interface {
	t.Helper()
	kc, err := kubeclient.NewForConfig(&rest.Config{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	return kc.CoreV1()
}

func TestCheckAPIServer(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	// A port nobody listens on: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"major":"1","minor":"35"}`)
	}))
	defer ok.Close()
	forbidden := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}`)
	}))
	defer forbidden.Close()
	unauthorized := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}`)
	}))
	defer unauthorized.Close()
	for _, tc := range []struct {
		name, host string
		want       []string // substrings of the error; none: no error
	}{
		{"refused", refused, []string{"cannot reach the kube-apiserver at " + refused, "connection refused"}},
		{"answers", ok.URL, nil},
		{"forbidden answers too", forbidden.URL, nil},
		{"unauthorized", unauthorized.URL, []string{"credentials (401)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := checkAPIServer(context.Background(), versionClient(t, tc.host), tc.host, 2*time.Second, logger)
			if took := time.Since(start); took > 4*time.Second {
				t.Errorf("took %s", took)
			}
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v, want %q", err, w)
				}
			}
		})
	}
	// Stopping is not an apiserver failure.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := checkAPIServer(ctx, versionClient(t, refused), refused, 2*time.Second, logger); err != nil {
		t.Errorf("cancelled: %v", err)
	}
}

// run against a refused apiserver exits within the check's timeout, with
// the real error, instead of waiting --cache-sync-timeout to blame RBAC.
func TestRunReportsRefusedAPIServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	kc := t.TempDir() + "/kubeconfig"
	cfg := "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"http://" + addr + "\"}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: x}\ncurrent-context: c\n"
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	old := apiserverCheckTimeout
	apiserverCheckTimeout = 2 * time.Second
	defer func() { apiserverCheckTimeout = old }()
	o := &runOptions{}
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--kubeconfig", kc, "--metrics-port", "0", "--log-level", "error"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = o.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("run: %v, want the refused connection to %s", err, addr)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("run took %s to report it", took)
	}
}
