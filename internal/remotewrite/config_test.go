package remotewrite

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Validate's errors are FieldErrors naming the endpoint and the config-file
// name of the field, whoever configured it, so that callers can name their
// own settings (the CLI names its flags).
func TestValidateFieldErrors(t *testing.T) {
	cfg := Config{ShutdownTimeout: -time.Second, Endpoints: []EndpointConfig{
		{URL: "http://x/push", Timeout: DefaultTimeout, Queue: DefaultQueueConfig()},
		{URL: "http://y/push", Timeout: DefaultTimeout, Queue: QueueConfig{Shards: -1}, Origin: Origin{Index: 1}},
	}}
	err := cfg.Validate()
	var fields []string
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("not a *FieldError: %v", err)
			return
		}
		fields = append(fields, fe.Endpoint+" "+fe.Field)
	}
	walk(err)
	for _, want := range []string{"http://y/push queue.shards", " shutdown_timeout"} {
		if !slices.Contains(fields, want) {
			t.Errorf("no error for %q in %q", want, fields)
		}
	}
	if strings.Contains(err.Error(), "--") {
		t.Errorf("the library's errors name flags:\n%v", err)
	}
}

// TestCredentialFilesRotate: the flags' token and password files go through
// prometheus/common/config, which reads them per request, so a rotated
// secret is used by the next request.
func TestCredentialFilesRotate(t *testing.T) {
	dir := t.TempDir()
	var got []string
	rcv := newReceiver(t, nil)
	for _, tc := range []struct {
		name  string
		setup func(e *EndpointConfig, secret string)
		want  func(secret string) string
	}{
		{"bearer", func(e *EndpointConfig, s string) { e.BearerTokenFile = writeFile(t, dir, "token", s+"\n") },
			func(s string) string { return "Bearer " + s }},
		{"basic", func(e *EndpointConfig, s string) {
			e.BasicAuth = BasicAuth{Username: "relay", PasswordFile: writeFile(t, dir, "password", s)}
		}, func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte("relay:"+s)) }},
	} {
		e := testEndpoint(rcv.url())
		tc.setup(&e, "one")
		c, err := newClient(e)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{"one", "two"} {
			tc.setup(&e, secret)
			if _, err := c.send(context.Background(), snappy.Encode(nil, nil)); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			rcv.mu.Lock()
			got = append(got, rcv.headers.Get("Authorization"))
			rcv.mu.Unlock()
			if g := got[len(got)-1]; g != tc.want(secret) {
				t.Errorf("%s: Authorization %q, want %q", tc.name, g, tc.want(secret))
			}
		}
	}
}

// FuzzParseConfigFile: arbitrary files never panic the loader or the
// validation, and whatever loads has its origin recorded.
func FuzzParseConfigFile(f *testing.F) {
	f.Add([]byte("endpoints:\n- url: https://m/api/v1/push\n  name: m\n  headers: {X-Scope-OrgID: a}\n  timeout: 3s\n  queue: {shards: 2}\n"))
	f.Add([]byte("endpoints:\n- url: http://x\n  basic_auth: {username: u, password_file: /p}\n  tls: {insecure_skip_verify: true}\n"))
	f.Add([]byte("endpoints: [{url: 'http://x', queue: {capacity: -1, min_backoff: 1h}}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		defaults := EndpointConfig{Timeout: time.Second, Queue: DefaultQueueConfig()}
		eps, err := parseConfigFile(b, "fuzz.yaml", defaults)
		if err != nil {
			return
		}
		for i, e := range eps {
			if e.Origin.File != "fuzz.yaml" || e.Origin.Index != i {
				t.Fatalf("origin %+v at %d", e.Origin, i)
			}
		}
		cfg := Config{Endpoints: eps}
		_ = cfg.Validate()
	})
}

// TestNewUsesValidatedConfig: a Config that passed Validate is not validated
// again by New (its secret files are read once at start-up), while any other
// Config is.
func TestNewUsesValidatedConfig(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("s3cr3t"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := testEndpoint("http://127.0.0.1:1/push")
	e.BearerTokenFile = token
	cfg := Config{Endpoints: []EndpointConfig{e}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	unvalidated := Config{Endpoints: []EndpointConfig{e}}
	if err := os.Remove(token); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, slog.New(slog.DiscardHandler), nil); err != nil {
		t.Errorf("New(validated config) = %v, want no second read of the token file", err)
	}
	if _, err := New(unvalidated, slog.New(slog.DiscardHandler), nil); err == nil || !strings.Contains(err.Error(), "bearer_token_file") {
		t.Errorf("New(unvalidated config) = %v, want the missing bearer_token_file named", err)
	}
}

// TestDefaultShardsFollowsCPUs: an endpoint that sets no shard count gets
// one sender per CPU the process may use, at most maxDefaultShards.
func TestDefaultShardsFollowsCPUs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for procs, want := range map[int]int{1: 1, 2: 2, 3: 3, 4: 4, 16: maxDefaultShards} {
		runtime.GOMAXPROCS(procs)
		if got := DefaultShards(); got != want {
			t.Errorf("GOMAXPROCS %d: DefaultShards() = %d, want %d", procs, got, want)
		}
		if got := DefaultQueueConfig().Shards; got != want {
			t.Errorf("GOMAXPROCS %d: DefaultQueueConfig().Shards = %d, want %d", procs, got, want)
		}
	}
}
