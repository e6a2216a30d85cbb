package deploy

import (
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Every rendering with remote write runs the relay with a disk queue
// (issue 12): --remote-write-queue-dir on a volume of its own, an emptyDir
// whose sizeLimit holds --remote-write-queue-max-bytes for the Deployment
// and DaemonSet, a PVC template (not an emptyDir) for the StatefulSet.
func TestDiskQueueVolumes(t *testing.T) {
	for _, spec := range specs {
		if !spec.remoteWrite {
			continue
		}
		t.Run(spec.name, func(t *testing.T) {
			w := byKind(objects(t, spec.name), spec.workloadKind)[0]
			podSpec, _, _ := unstructured.NestedMap(w.Object, "spec", "template", "spec")
			containers, _, _ := unstructured.NestedSlice(podSpec, "containers")
			var relay map[string]any
			for _, c := range containers {
				if c.(map[string]any)["name"] == "kubelet-meta-proxy" {
					relay = c.(map[string]any)
				}
			}
			args, _, _ := unstructured.NestedStringSlice(relay, "args")
			var dir string
			var maxBytes int64
			for _, a := range args {
				if v, ok := strings.CutPrefix(a, "--remote-write-queue-dir="); ok {
					dir = v
				}
				if v, ok := strings.CutPrefix(a, "--remote-write-queue-max-bytes="); ok {
					n, err := strconv.ParseInt(v, 10, 64)
					if err != nil {
						t.Fatalf("%s: not an integer", a)
					}
					maxBytes = n
				}
			}
			if dir == "" || maxBytes == 0 {
				t.Fatalf("args %v lack --remote-write-queue-dir and --remote-write-queue-max-bytes", args)
			}
			mounts, _, _ := unstructured.NestedSlice(relay, "volumeMounts")
			volume := ""
			for _, m := range mounts {
				m := m.(map[string]any)
				if m["mountPath"] == dir {
					volume, _ = m["name"].(string)
					if ro, _ := m["readOnly"].(bool); ro {
						t.Errorf("queue volume mounted read-only")
					}
				}
			}
			if volume == "" {
				t.Fatalf("no volume mounted at --remote-write-queue-dir=%s", dir)
			}
			volumes, _, _ := unstructured.NestedSlice(podSpec, "volumes")
			var emptyDir map[string]any
			for _, v := range volumes {
				v := v.(map[string]any)
				if v["name"] == volume {
					emptyDir, _ = v["emptyDir"].(map[string]any)
					if emptyDir == nil {
						t.Fatalf("pod volume %s is not an emptyDir: %v", volume, v)
					}
				}
			}
			claims, _, _ := unstructured.NestedSlice(w.Object, "spec", "volumeClaimTemplates")
			var claimSize string
			for _, c := range claims {
				c := c.(map[string]any)
				if n, _, _ := unstructured.NestedString(c, "metadata", "name"); n == volume {
					claimSize, _, _ = unstructured.NestedString(c, "spec", "resources", "requests", "storage")
				}
			}
			var size string
			switch spec.workloadKind {
			case "StatefulSet":
				if emptyDir != nil || claimSize == "" {
					t.Fatalf("StatefulSet: volume %s should come from a volumeClaimTemplate with a size (emptyDir %v, claim size %q)", volume, emptyDir, claimSize)
				}
				size = claimSize
			default:
				if emptyDir == nil {
					t.Fatalf("%s: no emptyDir volume %s", spec.workloadKind, volume)
				}
				size, _ = emptyDir["sizeLimit"].(string)
			}
			q, err := resource.ParseQuantity(size)
			if err != nil {
				t.Fatalf("volume size %q: %v", size, err)
			}
			if q.Value() < maxBytes+maxBytes/16 {
				t.Errorf("volume size %s does not hold --remote-write-queue-max-bytes=%d plus a segment of slack", size, maxBytes)
			}
		})
	}
}
