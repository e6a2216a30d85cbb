package version

import "testing"

func TestUserAgentNamesVersion(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v1.2.3"
	if got, want := UserAgent(), "kubelet-meta-proxy/v1.2.3"; got != want {
		t.Fatalf("UserAgent() = %q, want %q", got, want)
	}
}
