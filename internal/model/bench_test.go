package model

import (
	"fmt"
	"testing"
)

// BenchmarkIntern is a target's first scrape as the interner sees it:
// 5,000 new cAdvisor-shaped sets (60 metrics of 80 containers, 14 labels,
// most shared between series), into an empty interner.
func BenchmarkIntern(b *testing.B) {
	var sets [][]Label
	for c := range 80 {
		for m := range 60 {
			sets = append(sets, pairs("__name__", fmt.Sprintf("container_metric_%d_total", m),
				"container", fmt.Sprintf("c-%d", c%20), "cpu", "total", "id", fmt.Sprintf("/kubepods/burstable/pod%d/%d", c, c*7919),
				"image", fmt.Sprintf("registry.example/app-%d:v1.2.3", c%20), "instance", "198.18.0.10:10250", "job", "kubelet",
				"metrics_path", "/metrics/cadvisor", "name", fmt.Sprintf("k8s_c-%d", c), "namespace", fmt.Sprintf("ns-%d", c%10),
				"node", "node-a", "pod", fmt.Sprintf("pod-%d", c), "team", "frontend"))
		}
	}
	benchInternSets(b, sets)
}

// BenchmarkInternFamilyOrder is BenchmarkIntern's sets in the order a
// kubelet's cAdvisor payload has them, metric by metric, with a pod's own
// cgroup (no container, image or name label) before its containers: the
// sets that follow each other share fewer labels, at shifting positions.
func BenchmarkInternFamilyOrder(b *testing.B) {
	var sets [][]Label
	for m := range 60 {
		for c := range 80 {
			name := fmt.Sprintf("container_metric_%d_total", m)
			if c%4 == 0 {
				sets = append(sets, pairs("__name__", name, "cpu", "total", "id", fmt.Sprintf("/kubepods/burstable/pod%d", c/4),
					"instance", "198.18.0.10:10250", "job", "kubelet", "metrics_path", "/metrics/cadvisor",
					"namespace", fmt.Sprintf("ns-%d", c/4%10), "node", "node-a", "pod", fmt.Sprintf("pod-%d", c/4), "team", "frontend"))
				continue
			}
			sets = append(sets, pairs("__name__", name,
				"container", fmt.Sprintf("c-%d", c%20), "cpu", "total", "id", fmt.Sprintf("/kubepods/burstable/pod%d/%d", c/4, c*7919),
				"image", fmt.Sprintf("registry.example/app-%d:v1.2.3", c%20), "instance", "198.18.0.10:10250", "job", "kubelet",
				"metrics_path", "/metrics/cadvisor", "name", fmt.Sprintf("k8s_c-%d", c), "namespace", fmt.Sprintf("ns-%d", c/4%10),
				"node", "node-a", "pod", fmt.Sprintf("pod-%d", c/4), "team", "frontend"))
		}
	}
	benchInternSets(b, sets)
}

// benchInternSets interns sets into a new interner per iteration and
// reports the time per set.
func benchInternSets(b *testing.B, sets [][]Label) {
	b.ReportAllocs()
	for b.Loop() {
		in := NewLabelInterner(1)
		for _, ls := range sets {
			in.Intern(ls)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(sets)), "ns/set")
}
