package loadbench

import (
	"fmt"
	"slices"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/fakekubelet"
)

// endpointCaptures are what the simulated kubelets serve on the kubelet's other endpoints:
// the real /metrics capture and the generated /metrics/probes and /metrics/resource ones
// (internal/captures/GENERATED.md).
var endpointCaptures = map[string]struct{ path, capture string }{
	"metrics":  {"/metrics", "kubelet-metrics"},
	"probes":   {"/metrics/probes", "probes-1_35"},
	"resource": {"/metrics/resource", "resource-1_35"},
}

// serveEndpoints makes every kubelet serve the endpoints named (cadvisor is always served,
// and must be scraped: the warm-up and quiescence checks count its scrapes).
func serveEndpoints(ks *Kubelets, names []string) error {
	if len(names) > 0 && !slices.Contains(names, "cadvisor") {
		return fmt.Errorf("endpoints %v: cadvisor must be one of them (the benchmark paces rounds by its scrapes)", names)
	}
	for _, n := range names {
		if n == "cadvisor" {
			continue
		}
		e, ok := endpointCaptures[n]
		if !ok {
			return fmt.Errorf("unknown kubelet endpoint %q (want cadvisor, metrics, probes, resource)", n)
		}
		data, err := fakekubelet.ReadCapture(e.capture)
		if err != nil {
			return err
		}
		c, err := fakekubelet.Prepare(data, fakekubelet.RewriteOptions{})
		if err != nil {
			return fmt.Errorf("%s: %w", e.capture, err)
		}
		ks.ServeEndpoint(e.path, []*fakekubelet.Capture{c})
	}
	return nil
}
