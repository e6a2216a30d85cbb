package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestKubeletFlags(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("probes:\n- source_labels: [__name__]\n  regex: prober_probe_duration_seconds.*\n  action: drop\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("cadvisor: []\nslis:\n- action: drop\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, o *kubeletOptions)
	}{
		{name: "default", check: func(t *testing.T, o *kubeletOptions) {
			eps, err := o.endpoints("/metrics/cadvisor")
			if err != nil || len(eps) != 1 || eps[0].Name != "cadvisor" || eps[0].MetricRelabel != nil {
				t.Fatalf("%+v %v", eps, err)
			}
		}},
		{name: "all four, preset and file", args: []string{"--kubelet-endpoints=cadvisor,metrics,probes,resource", "--metric-relabel-preset=kube-prometheus", "--metric-relabel-config-file=" + good},
			check: func(t *testing.T, o *kubeletOptions) {
				eps, err := o.endpoints("/x/cadvisor")
				if err != nil || len(eps) != 4 || eps[0].Path != "/x/cadvisor" {
					t.Fatalf("%+v %v", eps, err)
				}
				// cadvisor: the preset's 3 rules; metrics: its 8; probes: the file's 1; resource: none.
				for i, want := range []int{3, 8, 1, 0} {
					if got := len(eps[i].MetricRelabel); got != want {
						t.Errorf("%s: %d rules, want %d", eps[i].Name, got, want)
					}
				}
			}},
		{name: "unknown endpoint", args: []string{"--kubelet-endpoints=cadvisor,slis"}, wantErr: `--kubelet-endpoints: unknown kubelet endpoint "slis"`},
		{name: "unknown preset", args: []string{"--metric-relabel-preset=stack"}, wantErr: `--metric-relabel-preset: unknown metric relabel preset "stack"`},
		{name: "bad file names file and line", args: []string{"--metric-relabel-config-file=" + bad}, wantErr: "--metric-relabel-config-file: " + bad + `:2: unknown endpoint "slis"`},
		{name: "missing file", args: []string{"--metric-relabel-config-file=" + filepath.Join(dir, "none.yaml")}, wantErr: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &kubeletOptions{}
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := o.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
}
