package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/remotewrite"
)

func TestTenantFlags(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "rw.yaml", "endpoints:\n  - url: http://other/push\n")
	for _, tc := range []struct {
		name string
		args []string
		want remotewrite.TenantConfig // of the --remote-write-url endpoint
		err  []string
	}{
		{"off", []string{"--remote-write-url=http://cortex/push"},
			remotewrite.TenantConfig{MaxTenants: remotewrite.DefaultMaxTenants, IdleTimeout: remotewrite.DefaultTenantIdleTimeout}, nil},
		{"default tenant", []string{"--remote-write-url=http://cortex/push", "--tenant-label=team", "--default-tenant=platform", "--tenant-remove-label", "--tenant-max=20", "--tenant-idle-timeout=1m"},
			remotewrite.TenantConfig{Label: "team", Default: "platform", RemoveLabel: true, MaxTenants: 20, IdleTimeout: time.Minute}, nil},
		{"thanos drop", []string{"--remote-write-url=http://thanos/push", "--tenant-label=team", "--tenant-header=THANOS-TENANT", "--tenant-missing=drop"},
			remotewrite.TenantConfig{Label: "team", Header: "THANOS-TENANT", Missing: "drop", MaxTenants: remotewrite.DefaultMaxTenants, IdleTimeout: remotewrite.DefaultTenantIdleTimeout}, nil},
		{"no default", []string{"--remote-write-url=http://cortex/push", "--tenant-label=team"}, remotewrite.TenantConfig{},
			[]string{"--remote-write-url #1", "--default-tenant: required"}},
		{"bad missing", []string{"--remote-write-url=http://cortex/push", "--tenant-label=team", "--tenant-missing=keep", "--default-tenant=x"}, remotewrite.TenantConfig{},
			[]string{"--tenant-missing: must be"}},
		{"header clash", []string{"--remote-write-url=http://cortex/push", "--tenant-label=team", "--default-tenant=x", "--remote-write-header=X-Scope-OrgID=a"}, remotewrite.TenantConfig{},
			[]string{"--remote-write-header", "tenant header"}},
		{"default without label", []string{"--remote-write-url=http://cortex/push", "--default-tenant=x"}, remotewrite.TenantConfig{},
			[]string{"--tenant-label: required"}},
		{"bad max", []string{"--remote-write-url=http://cortex/push", "--tenant-label=team", "--default-tenant=x", "--tenant-max=-1"}, remotewrite.TenantConfig{},
			[]string{"--tenant-max: must be positive"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o remoteWriteOptions
			fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
			fs.SetOutput(io.Discard)
			o.AddFlags(fs)
			if err := fs.Parse(append(tc.args, "--remote-write-config="+file)); err != nil {
				t.Fatal(err)
			}
			cfg, err := build(&o)
			if len(tc.err) > 0 {
				if err == nil {
					t.Fatalf("no error, want %q", tc.err)
				}
				for _, w := range tc.err {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Endpoints[0].Tenant; got != tc.want {
				t.Errorf("tenant %+v, want %+v", got, tc.want)
			}
			// The file's endpoint does not inherit the flags' routing.
			if got := cfg.Endpoints[1].Tenant; got.Enabled() {
				t.Errorf("the config file's endpoint inherited tenant routing %+v", got)
			}
		})
	}
}
