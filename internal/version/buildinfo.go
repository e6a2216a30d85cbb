package version

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// BuildInfoName is the name of the build-info gauge, as Prometheus's own
// prometheus_build_info: constant 1, the build in its labels, so dashboards
// can show and alerts can join on the running version.
const BuildInfoName = "kubelet_meta_proxy_build_info"

// NewBuildInfoCollector returns the kubelet_meta_proxy_build_info gauge
// {version, revision, goversion, goos, goarch} = 1. The labels are read
// when it is created: Version and Commit are set at link time.
func NewBuildInfoCollector() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: BuildInfoName,
		Help: "A metric with a constant '1' value labelled by the version, revision and Go version the relay was built with.",
		ConstLabels: prometheus.Labels{
			"version":   Version,
			"revision":  Commit,
			"goversion": runtime.Version(),
			"goos":      runtime.GOOS,
			"goarch":    runtime.GOARCH,
		},
	}, func() float64 { return 1 })
}
