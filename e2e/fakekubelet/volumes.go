package fakekubelet

import (
	"regexp"
)

// volumesCapture is appended to the default /metrics capture (a 2018 kubelet's): the
// kubelet_volume_stats_* families a newer kubelet writes, generated with the kubelet's own
// volume-stats collector (internal/captures/GENERATED.md).
const volumesCapture = "volumes-1_35"

var pvcLine = regexp.MustCompile(`namespace="([^"]*)",persistentvolumeclaim="data-([^"]*)"`)

// withVolumes returns the /metrics payload: the kubelet capture, then the volume stats with
// each claim in the namespace its pod (a volumeClaimTemplate's "data-POD") is served in, so
// that the claim and the pod's cAdvisor series belong to the same namespace.
func withVolumes(kubelet []byte, podNamespaces map[string]string) ([]byte, error) {
	vol, err := ReadCapture(volumesCapture)
	if err != nil {
		return nil, err
	}
	vol = pvcLine.ReplaceAllFunc(vol, func(m []byte) []byte {
		sub := pvcLine.FindSubmatch(m)
		ns, pod := string(sub[1]), string(sub[2])
		if to, ok := podNamespaces[ns+"/"+pod]; ok {
			ns = to
		}
		return []byte(`namespace="` + ns + `",persistentvolumeclaim="data-` + pod + `"`)
	})
	out := append([]byte(nil), kubelet...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, vol...), nil
}
