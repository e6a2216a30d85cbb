package bed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// netns is the bed's network namespace "kmp-<random>" with a veth pair: the host side
// (in the bed's namespace) has 198.18.S.1/24 and the kube-apiserver listens there; the
// namespace side has 198.18.S.2/24 plus one address per fake kubelet (198.18.S.10+).
type netns struct {
	name     string
	hostIf   string
	nsIf     string
	subnet   string // "198.18.S."
	hostIP   string
	registry string
}

// registryDir holds one file per live bed netns with the owning pid, so a later bed can
// remove netns left behind by a bed that was killed.
func registryDir() string { return filepath.Join(os.TempDir(), "kmp-bed-netns") }

// SweepStale deletes the network namespaces (and their veth pairs) of beds whose process is gone.
func SweepStale(ctx context.Context) {
	entries, _ := os.ReadDir(registryDir())
	for _, e := range entries {
		p := filepath.Join(registryDir(), e.Name())
		b, _ := os.ReadFile(p)
		fields := strings.Fields(string(b))
		if len(fields) < 2 {
			continue
		}
		pid, _ := strconv.Atoi(fields[0])
		if pidAlive(pid) {
			continue
		}
		_ = run(ctx, "ip", "netns", "del", e.Name())
		_ = run(ctx, "ip", "link", "del", fields[1])
		os.Remove(p)
	}
}

func usedSubnets(ctx context.Context) string {
	out, _ := exec.CommandContext(ctx, "ip", "-4", "-o", "addr").Output()
	return string(out)
}

func newNetns(ctx context.Context) (*netns, error) {
	SweepStale(ctx)
	var rb [3]byte
	_, _ = rand.Read(rb[:])
	id := hex.EncodeToString(rb[:])
	n := &netns{name: "kmp-" + id, hostIf: "kmp" + id + "h", nsIf: "kmp" + id + "n"}
	used := usedSubnets(ctx)
	for range 64 {
		s := fmt.Sprintf("198.%d.%d.", 18+mrand.IntN(2), mrand.IntN(256))
		if !strings.Contains(used, " "+s) {
			n.subnet = s
			break
		}
	}
	if n.subnet == "" {
		return nil, fmt.Errorf("no free /24 in 198.18.0.0/15")
	}
	n.hostIP = n.subnet + "1"
	if err := os.MkdirAll(registryDir(), 0o755); err != nil {
		return nil, err
	}
	n.registry = filepath.Join(registryDir(), n.name)
	if err := os.WriteFile(n.registry, []byte(fmt.Sprintf("%d %s\n", os.Getpid(), n.hostIf)), 0o644); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"netns", "add", n.name},
		{"link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf},
		{"link", "set", n.nsIf, "netns", n.name},
		{"addr", "add", n.hostIP + "/24", "dev", n.hostIf},
		{"link", "set", n.hostIf, "up"},
		{"-n", n.name, "link", "set", "lo", "up"},
		{"-n", n.name, "addr", "add", n.subnet + "2/24", "dev", n.nsIf},
		{"-n", n.name, "link", "set", n.nsIf, "up"},
	}
	for _, s := range steps {
		if err := run(ctx, "ip", s...); err != nil {
			n.delete()
			return nil, err
		}
	}
	// The host side needs a moment before its address can be bound (DAD is off for IPv4, but
	// the link must be up).
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(usedSubnets(ctx), " "+n.hostIP+"/24") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return n, nil
}

func (n *netns) addIP(ctx context.Context, ip string) error {
	return run(ctx, "ip", "-n", n.name, "addr", "add", ip+"/24", "dev", n.nsIf)
}

func (n *netns) delIP(ctx context.Context, ip string) error {
	return run(ctx, "ip", "-n", n.name, "addr", "del", ip+"/24", "dev", n.nsIf)
}

// delete removes the namespace and the veth pair (removing either side removes both).
func (n *netns) delete() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err1 := run(ctx, "ip", "netns", "del", n.name)
	if exec.CommandContext(ctx, "ip", "link", "show", n.hostIf).Run() == nil {
		_ = run(ctx, "ip", "link", "del", n.hostIf)
	}
	if n.registry != "" {
		os.Remove(n.registry)
	}
	return err1
}
