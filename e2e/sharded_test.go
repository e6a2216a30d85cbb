package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/deploy"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// TestShardedChartScrapesEveryNodeOnce runs the Helm chart's sharded mode (ci/sharded-values.yaml) as its
// StatefulSet would: one relay per replica, --shard-count as rendered, POD_NAME as the StatefulSet names its
// pods (NAME-0, NAME-1, the relay takes the ordinal as its shard). Together the replicas must scrape every node
// of the bed exactly once, and each replica some.
func TestShardedChartScrapesEveryNodeOnce(t *testing.T) {
	b := needBed(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	root, err := bed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := deploy.ChartRendering{Name: "chart/sharded", ValuesFile: "ci/sharded-values.yaml"}.Template(root)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := deploy.Objects(out)
	if err != nil {
		t.Fatal(err)
	}
	var sts *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "StatefulSet" {
			sts = o
		}
	}
	if sts == nil {
		t.Fatal("chart/sharded renders no StatefulSet")
	}
	replicas, _, _ := unstructured.NestedInt64(sts.Object, "spec", "replicas")
	containers, _, _ := unstructured.NestedSlice(sts.Object, "spec", "template", "spec", "containers")
	args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	var shardArgs []string
	for _, a := range args {
		// The sharding and the mode as rendered; the bed supplies the rest (apiserver, ports, remote write).
		if strings.HasPrefix(a, "--shard-count=") || strings.HasPrefix(a, "--mode=") || strings.HasPrefix(a, "--shard-index") {
			shardArgs = append(shardArgs, a)
		}
	}
	if replicas < 2 || !slices.Contains(shardArgs, fmt.Sprintf("--shard-count=%d", replicas)) {
		t.Fatalf("StatefulSet replicas %d with args %v: want >= 2 replicas and --shard-count equal to them", replicas, args)
	}

	// Three more nodes than the bed's three (removed at the end): with three, rendezvous hashing happens to
	// give all of them to one of two shards; with these six names each shard gets some.
	for _, name := range []string{"shard-node-a", "shard-node-b", "shard-node-c"} {
		if _, err := b.AddNode(ctx, name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := b.DeleteNode(ctx, name); err != nil {
				t.Errorf("delete node %s: %v", name, err)
			}
		})
	}
	nodes := map[string]bool{}
	for _, n := range b.Nodes() {
		nodes[n.Name] = true
	}
	scraped := map[string][]int{}
	targetUp := regexp.MustCompile(`(?m)^kubelet_meta_proxy_target_up\{target="node/([^"]+)"\} 1$`)
	targetsGauge := regexp.MustCompile(`(?m)^kubelet_meta_proxy_targets ([0-9]+)$`)
	for i := range int(replicas) {
		// The relay reads its shard from POD_NAME; the bed's processes inherit the test's environment.
		t.Setenv("POD_NAME", fmt.Sprintf("%s-%d", sts.GetName(), i))
		r, err := b.StartRelay(ctx, append([]string{"--scrape-interval", "2s", "--external-label", "e2e_test=" + t.Name()}, shardArgs...)...)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Stop()
		// Wait for a full round: every target of this shard (kubelet_meta_proxy_targets) scraped, up=1.
		var mine []string
		deadline := time.Now().Add(60 * time.Second)
		for {
			_, body, err := r.Get(ctx, "/metrics/self")
			mine = mine[:0]
			want := -1
			if err == nil {
				for _, m := range targetUp.FindAllStringSubmatch(string(body), -1) {
					mine = append(mine, m[1])
				}
				sort.Strings(mine)
				if m := targetsGauge.FindStringSubmatch(string(body)); m != nil {
					fmt.Sscan(m[1], &want)
				}
			}
			if want > 0 && len(mine) == want { // (0: not synced yet; each shard must get some)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("shard %d: %d of %d targets up after 60s (%v, %v)\n%s", i, len(mine), want, mine, err, r.Logs(20))
			}
			time.Sleep(time.Second)
		}
		t.Logf("shard %d (POD_NAME=%s-%d) scrapes %v", i, sts.GetName(), i, mine)
		if len(mine) == 0 {
			t.Errorf("shard %d scrapes no node: the test does not show the nodes split", i)
		}
		for _, n := range mine {
			scraped[n] = append(scraped[n], i)
		}
	}
	for n := range nodes {
		if len(scraped[n]) != 1 {
			t.Errorf("node %s scraped by shards %v, want exactly one", n, scraped[n])
		}
	}
	for n := range scraped {
		if !nodes[n] {
			t.Errorf("shards scrape %s, which is not a node of the bed", n)
		}
	}
}
