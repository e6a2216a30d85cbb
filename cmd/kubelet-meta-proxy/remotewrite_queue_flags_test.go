package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/remotewrite"
)

// TestQueueFlagsAndFile: the disk-queue flags reach every --remote-write-url
// endpoint and are inherited by config-file endpoints unless they set
// queue_dir / queue_max_bytes; bad values name the flag.
func TestQueueFlagsAndFile(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "rw.yaml", `
endpoints:
  - url: http://a.example/push
    name: a
  - url: http://b.example/push
    name: b
    queue_dir: /data/b
    queue_max_bytes: 33554432
`)
	var o remoteWriteOptions
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	o.AddFlags(fs)
	if o.Endpoint.Queue.MaxBytes != remotewrite.DefaultQueueMaxBytes || o.Endpoint.Queue.SyncInterval != time.Second || o.Endpoint.Queue.Dir != "" {
		t.Fatalf("defaults: %+v", o.Endpoint.Queue)
	}
	if err := fs.Parse([]string{"--remote-write-url=http://u.example/push", "--remote-write-config=" + file,
		"--remote-write-queue-dir=/data/q", "--remote-write-queue-max-bytes=104857600", "--remote-write-fsync-interval=250ms"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := build(&o)
	if err != nil {
		t.Fatal(err)
	}
	want := []remotewrite.QueueConfig{
		{Dir: "/data/q", MaxBytes: 100 << 20, SyncInterval: 250 * time.Millisecond},
		{Dir: "/data/q", MaxBytes: 100 << 20, SyncInterval: 250 * time.Millisecond},
		{Dir: "/data/b", MaxBytes: 32 << 20, SyncInterval: 250 * time.Millisecond},
	}
	for i, e := range cfg.Endpoints {
		got := remotewrite.QueueConfig{Dir: e.Queue.Dir, MaxBytes: e.Queue.MaxBytes, SyncInterval: e.Queue.SyncInterval}
		if got != want[i] {
			t.Errorf("endpoint %d (%s): %+v, want %+v", i, e.URL, got, want[i])
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--remote-write-queue-dir=/q", "--remote-write-queue-max-bytes=1000"}, "--remote-write-queue-max-bytes"},
		{[]string{"--remote-write-fsync-interval=-1s"}, "--remote-write-fsync-interval"},
	} {
		var o remoteWriteOptions
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(append([]string{"--remote-write-url=http://u.example/push"}, tc.args...)); err != nil {
			t.Fatal(err)
		}
		if _, err := build(&o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
}
