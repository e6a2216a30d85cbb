package main

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/remotewrite"
)

func parseRW(t *testing.T, args ...string) (*remoteWriteOptions, error) {
	t.Helper()
	var o remoteWriteOptions
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return &o, o.Validate()
}

func TestConfigFileGivenBothWays(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "prometheus.yml", `global:
  external_labels:
    cluster: eu1
remote_write:
  - url: https://mimir.example/api/v1/push
    queue_config:
      max_shards: 3
`)
	old := writeFile(t, dir, "rw.yaml", "endpoints:\n  - url: http://thanos.example/api/v1/receive\n")
	for _, tc := range []struct {
		args []string
		want []string // every string in the error
	}{
		{[]string{"--remote-write-url=http://x/push"}, []string{"--remote-write-url and --config.file " + file + " (remote_write, line 5)"}},
		{[]string{"--remote-write-config=" + old}, []string{"--remote-write-config and --config.file"}},
		{[]string{"--remote-write-shards=2", "--remote-write-timeout=3s"}, []string{"--remote-write-shards and --config.file", "--remote-write-timeout and --config.file"}},
		{[]string{"--external-label=cluster=us1"}, []string{"--external-label and --config.file " + file + " (global.external_labels)"}},
	} {
		_, err := parseRW(t, append(tc.args, "--config.file="+file)...)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %v, want it to contain %q", tc.args, err, w)
			}
		}
	}

	// Alone, the file configures what the flags would have.
	o, err := parseRW(t, "--config.file="+file, "--shutdown-timeout=7s")
	if err != nil {
		t.Fatal(err)
	}
	cfg := o.Config()
	if len(cfg.Endpoints) != 1 || cfg.Endpoints[0].Queue.Shards != 3 || cfg.Endpoints[0].Prom == nil || cfg.ShutdownTimeout.String() != "7s" {
		t.Fatalf("config %+v", cfg)
	}
	if ext := o.externalLabels(); len(ext) != 1 || ext[0] != (model.Label{Name: "cluster", Value: "eu1"}) {
		t.Errorf("external labels %v", ext)
	}
	if _, err := remotewrite.NewGroup(cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}

	// A file without remote_write combines with the flags' endpoints.
	labelsOnly := writeFile(t, dir, "labels.yml", "global:\n  external_labels: {cluster: eu2}\n")
	o, err = parseRW(t, "--config.file="+labelsOnly, "--remote-write-url=http://x/push")
	if err != nil || len(o.Config().Endpoints) != 1 || o.externalLabels()[0].Value != "eu2" {
		t.Fatalf("%v %+v", err, o.Config())
	}

	// Errors in the file name it and the line.
	bad := writeFile(t, dir, "bad.yml", "remote_write:\n  - url: https://m/push\n    tls_config: {ca_file: "+dir+"/missing.crt}\n")
	if _, err := parseRW(t, "--config.file="+bad); err == nil || !strings.Contains(err.Error(), bad+":2: remote_write[0]") || !strings.Contains(err.Error(), "missing.crt") {
		t.Errorf("missing CA file: %v", err)
	}
}
