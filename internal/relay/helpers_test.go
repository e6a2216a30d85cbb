package relay

import (
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/poll"
)

func labelsOf(kv ...string) []enrich.Label {
	var out []enrich.Label
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, enrich.Label{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

var waitFor = poll.Until
