package scrape

import (
	"fmt"
	"strings"

	"github.com/prometheus/prometheus/model/relabel"
)

// KubeletEndpoint is one of the kubelet's metrics endpoints, scraped as a
// target of its own per node, as kube-prometheus's kubelet ServiceMonitor
// scrapes each of them as an endpoint of its own.
type KubeletEndpoint struct {
	// Name is how flags and relabel configuration files name the endpoint.
	Name string
	// Path is the kubelet path scraped.
	Path string
	// MetricRelabel is applied to every new series of the endpoint's
	// targets (Prometheus's metric_relabel_configs).
	MetricRelabel []*relabel.Config
}

// Names of the kubelet's metrics endpoints.
const (
	EndpointCadvisor = "cadvisor"
	EndpointMetrics  = "metrics"
	EndpointProbes   = "probes"
	EndpointResource = "resource"
)

// kubeletPaths are the kubelet's paths of its metrics endpoints.
var kubeletPaths = map[string]string{
	EndpointCadvisor: "/metrics/cadvisor",
	EndpointMetrics:  "/metrics",
	EndpointProbes:   "/metrics/probes",
	EndpointResource: "/metrics/resource",
}

// KubeletEndpointNames are the endpoints there are, in the order targets are listed.
var KubeletEndpointNames = []string{EndpointCadvisor, EndpointMetrics, EndpointProbes, EndpointResource}

// KubeletEndpointPath is the kubelet path of endpoint name.
func KubeletEndpointPath(name string) (string, bool) {
	p, ok := kubeletPaths[name]
	return p, ok
}

// ParseKubeletEndpoints turns a list of endpoint names into endpoints, each
// named once. cadvisorPath, if not empty, overrides the cAdvisor path.
func ParseKubeletEndpoints(names []string, cadvisorPath string) ([]KubeletEndpoint, error) {
	var out []KubeletEndpoint
	seen := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(n)
		p, ok := kubeletPaths[n]
		if !ok {
			return nil, fmt.Errorf("unknown kubelet endpoint %q (want some of %s)", n, strings.Join(KubeletEndpointNames, ","))
		}
		if seen[n] {
			return nil, fmt.Errorf("kubelet endpoint %q named twice", n)
		}
		seen[n] = true
		if n == EndpointCadvisor && cadvisorPath != "" {
			p = cadvisorPath
		}
		out = append(out, KubeletEndpoint{Name: n, Path: p})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no kubelet endpoint (want some of %s)", strings.Join(KubeletEndpointNames, ","))
	}
	return out, nil
}

// targetKey is the key of a node's target for one endpoint. The cAdvisor
// endpoint (and a bare Path) keep "node/NAME", the key the relay always
// gave, so its self-metrics keep their series; the others add the endpoint.
func targetKey(node, endpoint string) string {
	if endpoint == "" || endpoint == EndpointCadvisor {
		return "node/" + node
	}
	return "node/" + node + "/" + endpoint
}
