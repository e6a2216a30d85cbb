package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relabeling"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
)

// kubeletOptions choose the kubelet endpoints scraped, their target labels
// and their metric relabeling.
type kubeletOptions struct {
	Endpoints           []string
	Service             string
	PortName            string
	MetricRelabelFile   string
	MetricRelabelPreset string
}

func (o *kubeletOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&o.Endpoints, "kubelet-endpoints", []string{scrape.EndpointCadvisor},
		"Kubelet endpoints to scrape, each a target of its own per node: some of "+strings.Join(scrape.KubeletEndpointNames, ",")+
			" (/metrics/cadvisor, /metrics, /metrics/probes, /metrics/resource).")
	fs.StringVar(&o.Service, "kubelet-service-label", "kubelet", `Value of the service label on node series (kube-prometheus: "kubelet"); empty leaves it out.`)
	fs.StringVar(&o.PortName, "kubelet-endpoint-label", "https-metrics", `Value of the endpoint label on node series (kube-prometheus: "https-metrics"); empty leaves it out.`)
	fs.StringVar(&o.MetricRelabelFile, "metric-relabel-config-file", "",
		"YAML file: a map from kubelet endpoint name to a list of Prometheus metric_relabel_configs, applied to every new series of that endpoint (after the preset's).")
	fs.StringVar(&o.MetricRelabelPreset, "metric-relabel-preset", "",
		`Shipped metric relabeling: "kube-prometheus" is kube-prometheus's kubelet ServiceMonitor's metricRelabelings.`)
}

func (o *kubeletOptions) Validate() error {
	var errs []error
	if _, err := scrape.ParseKubeletEndpoints(o.Endpoints, ""); err != nil {
		errs = append(errs, fmt.Errorf("--kubelet-endpoints: %w", err))
	}
	for flag, v := range map[string]string{"--kubelet-service-label": o.Service, "--kubelet-endpoint-label": o.PortName} {
		if !model.LabelValue(v).IsValid() {
			errs = append(errs, fmt.Errorf("%s=%q: not valid UTF-8", flag, v))
		}
	}
	if _, err := o.rules(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// rules are the preset's rules followed by the file's.
func (o *kubeletOptions) rules() (relabeling.Rules, error) {
	var preset, file relabeling.Rules
	var err error
	if o.MetricRelabelPreset != "" {
		if preset, err = relabeling.Preset(o.MetricRelabelPreset); err != nil {
			return nil, fmt.Errorf("--metric-relabel-preset: %w", err)
		}
	}
	if o.MetricRelabelFile != "" {
		if file, err = relabeling.ParseFile(o.MetricRelabelFile, scrape.KubeletEndpointNames); err != nil {
			return nil, fmt.Errorf("--metric-relabel-config-file: %w", err)
		}
	}
	return relabeling.Merge(preset, file), nil
}

// endpoints are the endpoints to scrape with their relabeling; the cAdvisor
// one at cadvisorPath (--node-cadvisor-path).
func (o *kubeletOptions) endpoints(cadvisorPath string) ([]scrape.KubeletEndpoint, error) {
	eps, err := scrape.ParseKubeletEndpoints(o.Endpoints, cadvisorPath)
	if err != nil {
		return nil, fmt.Errorf("--kubelet-endpoints: %w", err)
	}
	rules, err := o.rules()
	if err != nil {
		return nil, err
	}
	for i := range eps {
		eps[i].MetricRelabel = rules[eps[i].Name]
	}
	return eps, nil
}
