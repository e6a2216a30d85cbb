package scrape

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestParseKubeletEndpoints(t *testing.T) {
	for _, tc := range []struct {
		names   string
		cadv    string
		want    []KubeletEndpoint
		wantErr string
	}{
		{names: "cadvisor", want: []KubeletEndpoint{{Name: "cadvisor", Path: "/metrics/cadvisor"}}},
		{names: "cadvisor", cadv: "/x", want: []KubeletEndpoint{{Name: "cadvisor", Path: "/x"}}},
		{names: "metrics,probes,resource", want: []KubeletEndpoint{{Name: "metrics", Path: "/metrics"}, {Name: "probes", Path: "/metrics/probes"}, {Name: "resource", Path: "/metrics/resource"}}},
		{names: "cadvisor,slis", wantErr: `unknown kubelet endpoint "slis"`},
		{names: "probes,probes", wantErr: `"probes" named twice`},
		{names: "", wantErr: "unknown kubelet endpoint"},
	} {
		got, err := ParseKubeletEndpoints(strings.Split(tc.names, ","), tc.cadv)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.names, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %+v, %v; want %+v", tc.names, got, err, tc.want)
		}
	}
}

// Every endpoint is a target of its own, in both modes, with kube-prometheus's
// target labels; targets of one host:port differ by path and key.
func TestNodeTargetsPerEndpoint(t *testing.T) {
	eps, err := ParseKubeletEndpoints(KubeletEndpointNames, "")
	if err != nil {
		t.Fatal(err)
	}
	n := node("node-a", 10250, nil, addr(corev1.NodeInternalIP, "10.0.0.5"))
	for _, direct := range []bool{false, true} {
		o := NodeTargetOptions{Direct: direct, Endpoints: eps, Job: "kubelet", MetricsPathLabel: "metrics_path", NodeLabel: "node",
			Service: "kubelet", PortName: "https-metrics"}
		ts := o.NodeTargets(n)
		if len(ts) != 4 {
			t.Fatalf("direct=%v: %d targets, want 4", direct, len(ts))
		}
		keys := map[string]bool{}
		for i, tg := range ts {
			path := eps[i].Path
			wantKey := "node/node-a"
			if eps[i].Name != EndpointCadvisor {
				wantKey += "/" + eps[i].Name
			}
			wantURL := ""
			if direct {
				wantURL = "https://10.0.0.5:10250" + path
			}
			if tg.Key != wantKey || tg.Path != path || tg.URL != wantURL || tg.Endpoint != eps[i].Name || tg.Address != "10.0.0.5:10250" {
				t.Errorf("direct=%v endpoint %s: target %+v", direct, eps[i].Name, tg)
			}
			want := labelsOf("endpoint", "https-metrics", "instance", "10.0.0.5:10250", "job", "kubelet", "metrics_path", path, "node", "node-a", "service", "kubelet")
			if !reflect.DeepEqual(tg.Labels, want) {
				t.Errorf("direct=%v endpoint %s: labels %v, want %v", direct, eps[i].Name, tg.Labels, want)
			}
			if keys[tg.Key] {
				t.Errorf("key %s twice", tg.Key)
			}
			keys[tg.Key] = true
			if tg.Same(ts[(i+1)%len(ts)]) {
				t.Errorf("endpoint %s: Same as another endpoint's target", eps[i].Name)
			}
		}
		o.NameOrIP = "192.0.2.1"
		if st := o.StaticTargets(); len(st) != 4 || st[3].Path != "/metrics/resource" {
			t.Errorf("static targets: %+v", st)
		}
	}
}
