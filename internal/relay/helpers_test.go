package relay

import (
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
)

func labelsOf(kv ...string) []enrich.Label {
	var out []enrich.Label
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, enrich.Label{Name: kv[i], Value: kv[i+1]})
	}
	return out
}
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
