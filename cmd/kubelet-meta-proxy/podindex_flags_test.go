package main

import (
	"strings"
	"testing"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relay"
)

func TestPodFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		enabled bool
		check   relay.NodeCheck
		err     string
	}{
		{args: nil, enabled: false, check: relay.NodeCheckOff},
		{args: []string{"--pod-labels=app,team"}, enabled: true, check: relay.NodeCheckPlain},
		{args: []string{"--pod-labels=*", "--pod-label-prefix=pod_"}, enabled: true, check: relay.NodeCheckPlain},
		{args: []string{"--workload-labels"}, enabled: true, check: relay.NodeCheckPlain},
		{args: []string{"--workload-labels", "--pod-node-check=drop"}, enabled: true, check: relay.NodeCheckDrop},
		{args: []string{"--workload-labels", "--pod-node-check=off"}, enabled: true, check: relay.NodeCheckOff},
		// Setting the check alone turns the index on.
		{args: []string{"--pod-node-check=plain"}, enabled: true, check: relay.NodeCheckPlain},
		{args: []string{"--pod-node-check=maybe"}, err: `--pod-node-check="maybe"`},
		{args: []string{"--label-precedence=node"}, err: `--label-precedence="node"`},
		{args: []string{"--pod-labels=app", "--pod-label-prefix=9x"}, err: `--pod-label-prefix="9x"`},
		{args: []string{"--pod-label-prefix=pod_"}, err: "--pod-label-prefix needs --pod-labels"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			o, fs := runFlags()
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			err := o.pod.Validate()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Validate() = %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.pod.enabled() != tc.enabled || o.pod.check() != tc.check {
				t.Fatalf("enabled %v check %v, want %v %v", o.pod.enabled(), o.pod.check(), tc.enabled, tc.check)
			}
		})
	}
}
