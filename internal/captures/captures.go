// Package captures holds real kubelet payloads, copied byte for byte from
// permissively licensed public repositories (see SOURCES.md and the LICENSE
// files here). The unit tests, the fake kubelet of the test bed and the load
// benchmark all read them from here, so each capture is stored once.
package captures

import (
	"embed"
	"fmt"
)

//go:embed *.txt *.md
var files embed.FS

// Files are the captures by short name.
var Files = map[string]string{
	"1_35":            "newrelic-nri-kubernetes__1_35-kubelet-metrics-cadvisor.txt",
	"1_28":            "newrelic-nri-kubernetes__1_28-kubelet-metrics-cadvisor.txt",
	"1_16":            "newrelic-nri-kubernetes__1_16-kubelet-metrics-cadvisor.txt",
	"1_15":            "newrelic-nri-kubernetes__k8s_v1_15_kubelet_metrics_cadvisor_payload_plain.txt",
	"gke-2018":        "datadog-integrations-core__cadvisor_metrics.txt",
	"kubelet-metrics": "datadog-integrations-core__kubelet_metrics.txt",
}

// Generated are kubelet endpoints rendered by the kubelet's own code from the 1.35
// cAdvisor capture (hack/gen-kubelet-fixtures; GENERATED.md says how), by short name.
var Generated = map[string]string{
	"resource-1_35": "generated__1_35-kubelet-metrics-resource.txt",
	"probes-1_35":   "generated__1_35-kubelet-metrics-probes.txt",
	"volumes-1_35":  "generated__1_35-kubelet-metrics-volumes.txt",
}

// Read returns a capture by short name (see Files and Generated) or by file name.
func Read(name string) ([]byte, error) {
	if f, ok := Files[name]; ok {
		name = f
	} else if f, ok := Generated[name]; ok {
		name = f
	}
	b, err := files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("capture %q: %w", name, err)
	}
	return b, nil
}
