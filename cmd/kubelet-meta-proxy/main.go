// Command kubelet-meta-proxy scrapes every node's cAdvisor metrics, adds the
// labels of each sample's Namespace, serves the enriched view on /metrics and
// pushes it with Prometheus remote write.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	root := newRootCommand()
	root.SetArgs(normalizeArgs(os.Args[1:]))
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubelet-meta-proxy:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "kubelet-meta-proxy",
		Short: "Enrich kubelet cAdvisor metrics with Namespace labels and remote-write them",
		Long: `kubelet-meta-proxy scrapes every node's cAdvisor metrics (through the kube-apiserver's
node proxy, or straight from the kubelet), adds labels taken from each sample's Namespace
(namespace label team: frontend becomes team="frontend" on every series of every pod in it),
serves the enriched view on /metrics and pushes it to Prometheus, Mimir or Thanos with remote write.`,
		Version:       version.Version + " (" + version.Commit + ")",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCommand(), newScrapeOnceCommand())
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see %s --help)", err, c.CommandPath())
	})
	return root
}

// singleDashLong matches -flag-name[=value]: the original tool's Go flag
// spelling, which its manifests use (-node-port=443).
var singleDashLong = regexp.MustCompile(`^-[a-zA-Z][a-zA-Z0-9-]+(=.*)?$`)

// normalizeArgs turns single-dash long flags into double-dash ones, so that
// the original kubelet-meta-proxy's manifests keep working unchanged. Single
// letters (-h) are shorthands and stay; everything after "--" is left alone.
func normalizeArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if singleDashLong.MatchString(a) {
			a = "-" + a
		}
		out = append(out, a)
	}
	return out
}
