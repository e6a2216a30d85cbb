// Command gen-kubelet-fixtures renders kubelet /metrics/resource and /metrics/probes
// expositions with the kubelet's own code (k8s.io/kubernetes v1.35.4), fed with the pods,
// containers and numbers of the real kubelet 1.35 cAdvisor capture in internal/captures.
// It is its own module so that the main module never depends on k8s.io/kubernetes.
//
//	cd hack/gen-kubelet-fixtures && GOWORK=off go run . -dir ../../internal/captures
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	compbasemetrics "k8s.io/component-base/metrics"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/kubernetes/pkg/kubelet/metrics/collectors"
	"k8s.io/kubernetes/pkg/kubelet/prober"
	serverstats "k8s.io/kubernetes/pkg/kubelet/server/stats"
)

const (
	cadvisorFile = "newrelic-nri-kubernetes__1_35-kubelet-metrics-cadvisor.txt"
	nodeName     = "datagen-1-35" // the capture's node (kube_node_info of the same run)
	resourceOut  = "generated__1_35-kubelet-metrics-resource.txt"
	probesOut    = "generated__1_35-kubelet-metrics-probes.txt"
	volumesOut   = "generated__1_35-kubelet-metrics-volumes.txt"
)

// cgroup is one cgroup of the capture with the numbers the kubelet's summary takes from
// cAdvisor (pkg/kubelet/stats/helper.go: cadvisorInfoToCPUandMemoryStats, ...ToSwapStats).
type cgroup struct {
	id, container, pod, namespace, name, image string
	cpu, ws, swap, swapLimit, start            float64
	cpuTS, wsTS, swapTS                        int64
	hasCPU, hasMem, hasSwap                    bool
}

var podCgroupRE = regexp.MustCompile(`^/kubepods(/[a-z]+)?/pod([0-9a-f_-]+)$`)

func main() {
	dir := flag.String("dir", "../../internal/captures", "folder with the captures; outputs are written there")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "gen-kubelet-fixtures:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, cadvisorFile))
	if err != nil {
		return err
	}
	tp := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := tp.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s: %w", cadvisorFile, err)
	}
	cgs := map[string]*cgroup{}
	var captureTS int64
	get := func(m *dto.Metric) *cgroup {
		l := map[string]string{}
		for _, p := range m.Label {
			l[p.GetName()] = p.GetValue()
		}
		c := cgs[l["id"]]
		if c == nil {
			c = &cgroup{id: l["id"], container: l["container"], pod: l["pod"], namespace: l["namespace"], name: l["name"], image: l["image"]}
			cgs[c.id] = c
		}
		if m.GetTimestampMs() > captureTS {
			captureTS = m.GetTimestampMs()
		}
		return c
	}
	for _, m := range fams["container_cpu_usage_seconds_total"].GetMetric() {
		c := get(m)
		c.cpu, c.cpuTS, c.hasCPU = m.GetCounter().GetValue(), m.GetTimestampMs(), true
	}
	for _, m := range fams["container_memory_working_set_bytes"].GetMetric() {
		c := get(m)
		c.ws, c.wsTS, c.hasMem = m.GetGauge().GetValue(), m.GetTimestampMs(), true
	}
	for _, m := range fams["container_memory_swap"].GetMetric() {
		c := get(m)
		c.swap, c.swapTS, c.hasSwap = m.GetGauge().GetValue(), m.GetTimestampMs(), true
	}
	for _, m := range fams["container_spec_memory_swap_limit_bytes"].GetMetric() {
		get(m).swapLimit = m.GetGauge().GetValue()
	}
	for _, m := range fams["container_start_time_seconds"].GetMetric() {
		get(m).start = m.GetGauge().GetValue()
	}
	sum, err := summary(cgs)
	if err != nil {
		return err
	}
	res, err := renderResource(sum)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, resourceOut), res, 0o644); err != nil {
		return err
	}
	probes, err := renderProbes(sum, cgs, time.UnixMilli(captureTS))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, probesOut), probes, 0o644); err != nil {
		return err
	}
	volumes, err := renderVolumes(fams, cgs)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, volumesOut), volumes, 0o644)
}

func ms(ts int64) metav1.Time { return metav1.NewTime(time.UnixMilli(ts)) }

func u64(v float64) *uint64 { x := uint64(math.Round(v)); return &x }

// cpuMem converts a cgroup the way cadvisorInfoToCPUandMemoryStats does (CPU seconds to
// core-nanoseconds; the collector divides by 1e9 again).
func cpuMem(c *cgroup) (*statsapi.CPUStats, *statsapi.MemoryStats, *statsapi.SwapStats) {
	var cpu *statsapi.CPUStats
	var mem *statsapi.MemoryStats
	var swap *statsapi.SwapStats
	if c.hasCPU {
		cpu = &statsapi.CPUStats{Time: ms(c.cpuTS), UsageCoreNanoSeconds: u64(c.cpu * 1e9)}
	}
	if c.hasMem {
		mem = &statsapi.MemoryStats{Time: ms(c.wsTS), WorkingSetBytes: u64(c.ws)}
	}
	if c.hasMem && c.hasSwap {
		swap = &statsapi.SwapStats{Time: ms(c.swapTS), SwapUsageBytes: u64(c.swap)}
		// The kubelet reports the available swap unless the limit is "unlimited" (> 1<<62).
		if c.swapLimit <= float64(uint64(1)<<62) {
			swap.SwapAvailableBytes = u64(math.Max(c.swapLimit-c.swap, 0))
		}
	}
	return cpu, mem, swap
}

// summary builds what the kubelet's summary provider returns from these cgroups
// (pkg/kubelet/stats/cadvisor_stats_provider.go ListPodCPUAndMemoryStats): the node from
// cgroup "/", one PodStats per pod with an application container, its containers, and the
// pod cgroup's numbers. Sandboxes (container="") are left out.
func summary(cgs map[string]*cgroup) (*statsapi.Summary, error) {
	root := cgs["/"]
	if root == nil {
		return nil, fmt.Errorf("no root cgroup in %s", cadvisorFile)
	}
	cpu, mem, swap := cpuMem(root)
	s := &statsapi.Summary{Node: statsapi.NodeStats{NodeName: nodeName, CPU: cpu, Memory: mem, Swap: swap}}
	pods := map[string]*statsapi.PodStats{}
	podCg := map[string]*cgroup{}
	ids := make([]string, 0, len(cgs))
	for id := range cgs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		c := cgs[id]
		if c.pod == "" {
			continue
		}
		if m := podCgroupRE.FindStringSubmatch(id); m != nil {
			podCg[c.namespace+"/"+c.pod] = c
			continue
		}
		if c.container == "" {
			continue
		}
		k := c.namespace + "/" + c.pod
		p := pods[k]
		if p == nil {
			uid := ""
			if m := podCgroupRE.FindStringSubmatch(filepath.Dir(id)); m != nil {
				uid = m[2]
			}
			p = &statsapi.PodStats{PodRef: statsapi.PodReference{Name: c.pod, Namespace: c.namespace, UID: uid}}
			pods[k] = p
		}
		ccpu, cmem, cswap := cpuMem(c)
		p.Containers = append(p.Containers, statsapi.ContainerStats{
			Name: c.container, StartTime: metav1.NewTime(time.Unix(int64(c.start), 0)), CPU: ccpu, Memory: cmem, Swap: cswap,
		})
	}
	keys := make([]string, 0, len(pods))
	for k := range pods {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := pods[k]
		if c := podCg[k]; c != nil {
			p.CPU, p.Memory, p.Swap = cpuMem(c)
		}
		s.Pods = append(s.Pods, *p)
	}
	return s, nil
}

type summaryProvider struct{ s *statsapi.Summary }

func (p summaryProvider) Get(context.Context, bool) (*statsapi.Summary, error) { return p.s, nil }
func (p summaryProvider) GetCPUAndMemoryStats(context.Context) (*statsapi.Summary, error) {
	return p.s, nil
}

// serve renders a registry through component-base's handler, as the kubelet's server does.
func serve(r compbasemetrics.KubeRegistry) ([]byte, error) {
	rec := httptest.NewRecorder()
	h := compbasemetrics.HandlerFor(r, compbasemetrics.HandlerOpts{ErrorHandling: compbasemetrics.ContinueOnError})
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		return nil, fmt.Errorf("handler: %d %s", rec.Code, rec.Body.String())
	}
	return rec.Body.Bytes(), nil
}

// renderResource registers the kubelet's resource-metrics collector as
// pkg/kubelet/server/server.go does for /metrics/resource.
func renderResource(s *statsapi.Summary) ([]byte, error) {
	r := compbasemetrics.NewKubeRegistry()
	r.CustomMustRegister(collectors.NewResourceMetricsCollector(summaryProvider{s}))
	return serve(r)
}

type probeSpec struct {
	kind                 string // Liveness, Readiness, Startup (prober's probeType.String())
	initialDelay, period int
}

// probes of the capture's containers: the kubeadm static-pod manifests (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler), CoreDNS's and metrics-server's and
// kube-state-metrics's deployment manifests. Containers not named here have no probes
// (kindnet, kube-proxy, storage-provisioner, the e2e workloads).
var probeSpecs = map[string][]probeSpec{
	"etcd":                    {{"Liveness", 10, 10}, {"Startup", 10, 10}},
	"kube-apiserver":          {{"Liveness", 10, 10}, {"Readiness", 0, 1}, {"Startup", 10, 10}},
	"kube-controller-manager": {{"Liveness", 10, 10}, {"Startup", 10, 10}},
	"kube-scheduler":          {{"Liveness", 10, 10}, {"Startup", 10, 10}},
	"coredns":                 {{"Liveness", 60, 10}, {"Readiness", 0, 10}},
	"metrics-server":          {{"Liveness", 0, 10}, {"Readiness", 20, 10}},
	"kube-state-metrics":      {{"Liveness", 5, 10}, {"Readiness", 5, 10}},
}

// renderProbes replays the prober workers (pkg/kubelet/prober/worker.go doProbe) from each
// container's start to the capture's time: no probe before initialDelay, one successful
// startup probe that puts the worker on hold, liveness and readiness only once started,
// every period; each success observes a duration. The real metric vectors are registered
// as pkg/kubelet/server/server.go does for /metrics/probes (without process_start_time_seconds,
// which would be this generator's own).
func renderProbes(s *statsapi.Summary, cgs map[string]*cgroup, now time.Time) ([]byte, error) {
	// component-base vectors stay no-ops until registered.
	r := compbasemetrics.NewKubeRegistry()
	r.MustRegister(prober.ProberResults)
	r.MustRegister(prober.ProberDuration)
	rng := rand.New(rand.NewSource(1))
	for _, p := range s.Pods {
		for _, c := range p.Containers {
			specs := probeSpecs[c.Name]
			started := c.StartTime.Time
			for _, sp := range specs {
				first := started.Add(time.Duration(sp.initialDelay) * time.Second)
				if sp.kind != "Startup" {
					for _, o := range specs {
						if o.kind == "Startup" {
							first = started.Add(time.Duration(max(o.initialDelay, sp.initialDelay)+o.period) * time.Second)
						}
					}
				}
				n := 0
				if !now.Before(first) {
					n = int(now.Sub(first)/(time.Duration(sp.period)*time.Second)) + 1
				}
				if sp.kind == "Startup" {
					n = min(n, 1)
				}
				for range n {
					prober.ProberResults.WithLabelValues(sp.kind, "successful", c.Name, p.PodRef.Name, p.PodRef.Namespace, p.PodRef.UID).Inc()
					// HTTP probes of local components answer in about 1-10 ms.
					prober.ProberDuration.WithLabelValues(sp.kind, c.Name, p.PodRef.Name, p.PodRef.Namespace).Observe(0.001 + rng.ExpFloat64()*0.003)
				}
			}
		}
	}
	return serve(r)
}

// volumeProvider is the kubelet's stats provider as the volume-stats collector sees it: only
// ListPodStats is called (pkg/kubelet/metrics/collectors/volume_stats.go).
type volumeProvider struct {
	serverstats.Provider
	pods []statsapi.PodStats
}

func (p volumeProvider) ListPodStats(context.Context) ([]statsapi.PodStats, error) {
	return p.pods, nil
}

// renderVolumes renders the kubelet's kubelet_volume_stats_* families (the real
// NewVolumeStatsCollector, registered as pkg/kubelet/server/server.go registers it on
// /metrics) for one PersistentVolumeClaim per StatefulSet pod of the capture, named as a
// volumeClaimTemplate "data" names them. The capture's cluster (kind) provisions them with
// local-path on the node's root filesystem, so the kubelet's statfs of the volume gives that
// filesystem's capacity, available bytes and inodes: taken from the capture's root cgroup
// figures of device /dev/vda1. What the volume's own directory uses is not in the capture:
// 1 MiB + Exp(8 MiB) bytes and 10 + Exp(100) inodes, seeded.
func renderVolumes(fams map[string]*dto.MetricFamily, cgs map[string]*cgroup) ([]byte, error) {
	rootFS := func(name string) (float64, error) {
		for _, m := range fams[name].GetMetric() {
			l := map[string]string{}
			for _, p := range m.Label {
				l[p.GetName()] = p.GetValue()
			}
			if l["id"] == "/" && l["device"] == "/dev/vda1" {
				return m.GetGauge().GetValue() + m.GetCounter().GetValue(), nil
			}
		}
		return 0, fmt.Errorf("%s: no root cgroup series of /dev/vda1", name)
	}
	var fs [4]float64
	for i, name := range []string{"container_fs_limit_bytes", "container_fs_usage_bytes", "container_fs_inodes_total", "container_fs_inodes_free"} {
		v, err := rootFS(name)
		if err != nil {
			return nil, err
		}
		fs[i] = v
	}
	limit, usage, inodes, inodesFree := fs[0], fs[1], fs[2], fs[3]
	type podRef struct{ ns, pod string }
	seen := map[podRef]bool{}
	var refs []podRef
	for _, c := range cgs {
		if c.pod != "" && regexp.MustCompile(`^e2e-statefulset-\d+$`).MatchString(c.pod) && !seen[podRef{c.namespace, c.pod}] {
			seen[podRef{c.namespace, c.pod}] = true
			refs = append(refs, podRef{c.namespace, c.pod})
		}
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("no StatefulSet pod in the capture")
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].ns+"/"+refs[i].pod < refs[j].ns+"/"+refs[j].pod })
	rnd := rand.New(rand.NewSource(14))
	var pods []statsapi.PodStats
	for _, r := range refs {
		used := 1<<20 + uint64(rnd.ExpFloat64()*(8<<20))
		iused := 10 + uint64(rnd.ExpFloat64()*100)
		pods = append(pods, statsapi.PodStats{
			PodRef: statsapi.PodReference{Name: r.pod, Namespace: r.ns},
			VolumeStats: []statsapi.VolumeStats{{
				Name: "data",
				FsStats: statsapi.FsStats{CapacityBytes: u64(limit), AvailableBytes: u64(limit - usage), UsedBytes: &used,
					Inodes: u64(inodes), InodesFree: u64(inodesFree), InodesUsed: &iused},
				PVCRef: &statsapi.PVCReference{Name: "data-" + r.pod, Namespace: r.ns},
			}},
		})
	}
	reg := compbasemetrics.NewKubeRegistry()
	reg.CustomMustRegister(collectors.NewVolumeStatsCollector(volumeProvider{pods: pods}))
	return serve(reg)
}
