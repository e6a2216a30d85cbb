// Package version holds the build's version, set at link time:
//
//	go build -ldflags "-X github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/version.Version=v1.2.3 \
//	  -X github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/version.Commit=abc1234"
package version

// Version is the release version of the build; "dev" when not set by -ldflags.
var Version = "dev"

// Commit is the VCS revision of the build; "unknown" when not set by -ldflags.
var Commit = "unknown"

// UserAgent is the User-Agent the relay sends to the servers it talks to, so
// that their operators can tell which relay version is calling.
func UserAgent() string { return "kubelet-meta-proxy/" + Version }
