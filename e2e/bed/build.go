package bed

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Build builds what the bed runs into <root>/bin: kube-apiserver and etcd (hack/build-kube.sh,
// skipped when already built at the pinned versions), fake-kubelet, and the relay
// (kubelet-meta-proxy). The relay's build error comes back separately so a bed can start
// without it; StartRelay then fails.
func Build(ctx context.Context, root string, log io.Writer) (relayErr, err error) {
	if log == nil {
		log = io.Discard
	}
	step := func(name string, cmd *exec.Cmd) error {
		start := time.Now()
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = log, log
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", name, err)
		}
		fmt.Fprintf(log, "bed: built %s in %s\n", name, time.Since(start).Round(time.Millisecond))
		return nil
	}
	bin := filepath.Join(root, "bin")
	if err := step("kube-apiserver and etcd", exec.CommandContext(ctx, "bash", filepath.Join(root, "hack", "build-kube.sh"))); err != nil {
		return nil, err
	}
	if err := step("fake-kubelet", exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(bin, "fake-kubelet"), "./e2e/cmd/fake-kubelet")); err != nil {
		return nil, err
	}
	relayErr = step("kubelet-meta-proxy", exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", "grpcnotrace", "-o", filepath.Join(bin, "kubelet-meta-proxy"), "./cmd/kubelet-meta-proxy"))
	return relayErr, nil
}

// BuildExtra builds the on-demand components named (cortex, kube-state-metrics) into
// <root>/bin with hack/build-cortex.sh, skipped when bin/ has them at the pinned version.
// Tests call it only when they need them, so the rest of the suite never waits for it.
func BuildExtra(ctx context.Context, root string, log io.Writer, names ...string) error {
	if log == nil {
		log = io.Discard
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "hack", "build-cortex.sh")}, names...)...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %v: %w", names, err)
	}
	fmt.Fprintf(log, "bed: %v ready in %s\n", names, time.Since(start).Round(time.Millisecond))
	return nil
}
