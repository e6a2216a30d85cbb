package version

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestUserAgentNamesVersion(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v1.2.3"
	if got, want := UserAgent(), "kubelet-meta-proxy/v1.2.3"; got != want {
		t.Fatalf("UserAgent() = %q, want %q", got, want)
	}
}

func TestBuildInfoCollector(t *testing.T) {
	oldV, oldC := Version, Commit
	t.Cleanup(func() { Version, Commit = oldV, oldC })
	Version, Commit = "v1.2.3", "abc1234"
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewBuildInfoCollector())
	want := fmt.Sprintf(`# HELP kubelet_meta_proxy_build_info A metric with a constant '1' value labelled by the version, revision and Go version the relay was built with.
# TYPE kubelet_meta_proxy_build_info gauge
kubelet_meta_proxy_build_info{goarch=%q,goos=%q,goversion=%q,revision="abc1234",version="v1.2.3"} 1
`, runtime.GOARCH, runtime.GOOS, runtime.Version())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), BuildInfoName); err != nil {
		t.Fatal(err)
	}
}
