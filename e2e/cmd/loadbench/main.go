// Command loadbench is the relay's whole-process load test: simulated kubelets (pods cloned
// from the kubelet 1.35 capture, spread over namespaces with a heavy tail) on 127.0.0.1, a
// real etcd and kube-apiserver (bin/), the relay binary (bin/kubelet-meta-proxy, built with
// make build) in --mode=kubelet (or apiserver: -mode), and a remote-write receiver that decodes and counts what
// arrives. It prints and writes (default .bench/loadbench-NODESxPODS.txt) samples/s
// delivered, relay CPU-seconds per million samples, peak RSS and wire bytes per sample, with
// enrichment on and off.
//
//	go run ./e2e/cmd/loadbench -nodes 50 -pods 30 -interval 15s -rounds 6 -enrich both
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/loadbench"
)

func main() {
	nodes := flag.Int("nodes", 50, "simulated kubelets (nodes)")
	pods := flag.Int("pods", 30, "pods per node, including its 5-8 kube-system daemonset pods")
	namespaces := flag.Int("namespaces", 200, "application namespaces (Zipf-spread), each with a team label")
	teams := flag.Int("teams", loadbench.DefaultWorkload(0).Teams, "teams the namespaces are labelled with (ns-i gets team-(i mod teams)); kube-system is team platform")
	interval := flag.Duration("interval", 15*time.Second, "relay --scrape-interval")
	rounds := flag.Int("rounds", 6, "measured scrape rounds (after warm-up)")
	duration := flag.Duration("duration", 0, "measured time instead of -rounds (rounded up to whole intervals)")
	warmup := flag.Int("warmup", 1, "warm-up rounds, not measured")
	enrich := flag.String("enrich", "both", "on, off or both")
	gz := flag.Bool("kubelet-gzip", false, "simulated kubelets gzip their responses when asked (real kubelets do; costs the relay a gunzip)")
	out := flag.String("out", "", "report file (default .bench/loadbench-NODESxPODS.txt in the repository)")
	pprof := flag.Bool("pprof", false, "run a build of the relay with net/http/pprof and save CPU (measured window) and heap profiles next to the report (-out without .txt, plus -on|-off.cpu.pprof / .heap.pprof)")
	noBuild := flag.Bool("no-build", false, "do not run make build (use bin/kubelet-meta-proxy as it is)")
	timeout := flag.Duration("timeout", 0, "stop everything after this long (default: computed from the rounds, plus 5m)")
	endpoints := flag.String("endpoints", "", "kubelet endpoints the relay scrapes (--kubelet-endpoints), e.g. cadvisor,metrics,probes,resource; default cadvisor")
	diskQueue := flag.Bool("disk-queue", false, "run the relay with --remote-write-queue-dir (a new directory under /var/tmp)")
	outage := flag.Duration("receiver-outage", 0, "instead of the measured rounds: take the receiver down (503) this long after the first round, then measure the drain and check every scraped sample arrived in order")
	var relayArgs multiFlag
	flag.Var(&relayArgs, "relay-arg", "extra relay flag (repeatable), e.g. -relay-arg=--max-concurrency=32")
	podIndex := flag.Bool("pod-index", false, "create every simulated pod in the apiserver (on its node, owned by a ReplicaSet or DaemonSet) and run the relay with the pod index on: "+strings.Join(loadbench.PodIndexArgs, " ")+" (pod-on-node check plain)")
	mode := flag.String("mode", "kubelet", "relay modes to run, comma-separated: kubelet (straight to the kubelets) and/or apiserver (through the kube-apiserver's node proxy; puts the apiserver and the kubelets on the bed's netns address, root)")
	proxyProto := flag.String("node-proxy-protocol", "", "apiserver mode: relay --node-proxy-protocol values to run, comma-separated (http/1.1,h2); default the relay's")
	proxyGzip := flag.String("node-proxy-gzip", "", "apiserver mode: relay --node-proxy-gzip values to run, comma-separated (on,off); default the relay's. The kubelets gzip only with -kubelet-gzip")
	churn := flag.Float64("churn", 0, "after each steady window, measure as many rounds with this share of every node's pods replaced at every scrape (e.g. 0.33)")
	vmagent := flag.Bool("vmagent", false, "after the relay, run vmagent (bin/vmagent, hack/build-vmagent.sh) against the same kubelets, measure it the same way and report relay/vmagent ratios of CPU-s per million samples and peak RSS")
	vmagentRelabel := flag.Bool("vmagent-relabel", false, "with -vmagent: give vmagent metric_relabel_configs that set team from the namespace (one rule per team), the static equivalent of the relay's enrichment")
	var vmagentArgs multiFlag
	flag.Var(&vmagentArgs, "vmagent-arg", "extra vmagent flag (repeatable), e.g. -vmagent-arg=-promscrape.streamParse")
	tenants := flag.Bool("tenant-routing", false, "route every series to the tenant of its team label (--tenant-label=team --default-tenant=platform): one tenant per request")
	flag.Parse()
	if *tenants {
		relayArgs = append(relayArgs, "--tenant-label=team", "--default-tenant=platform")
	}

	var modes []bool
	switch *enrich {
	case "on":
		modes = []bool{true}
	case "off":
		modes = []bool{false}
	case "both":
		modes = []bool{true, false}
	default:
		fail(fmt.Errorf("-enrich must be on, off or both, not %q", *enrich))
	}
	variants, err := loadbench.Variants(splitList(*mode), splitList(*proxyProto), splitList(*proxyGzip))
	if err != nil {
		fail(fmt.Errorf("-mode, -node-proxy-protocol, -node-proxy-gzip: %w", err))
	}
	if *churn < 0 || *churn > 1 || (*churn > 0 && (*podIndex || *outage > 0)) {
		fail(fmt.Errorf("-churn=%v: want a share in (0, 1], without -pod-index (churned pods are not in the apiserver) or -receiver-outage", *churn))
	}
	if *duration > 0 {
		*rounds = int((*duration + *interval - 1) / *interval)
	}
	if *rounds < 1 || *nodes < 1 || *pods < 1 || *interval <= 0 {
		fail(fmt.Errorf("need -rounds, -nodes, -pods >= 1 and -interval > 0"))
	}
	root, err := bed.RepoRoot()
	if err != nil {
		fail(err)
	}
	if *out == "" {
		*out = filepath.Join(root, ".bench", fmt.Sprintf("loadbench-%dx%d.txt", *nodes, *pods))
	}
	if os.Getenv("LOADBENCH_BAD_DIR") == "" {
		// The receiver keeps any request it refuses next to the report.
		os.Setenv("LOADBENCH_BAD_DIR", filepath.Dir(*out))
	}
	w := loadbench.DefaultWorkload(*nodes)
	w.PodsPerNode, w.Namespaces, w.Teams = *pods, *namespaces, *teams
	cfg := loadbench.Config{
		Workload: w, Interval: *interval, WarmupRounds: *warmup, Rounds: *rounds, Enrich: modes,
		KubeletGzip: *gz, Build: !*noBuild, RelayArgs: relayArgs, PodIndex: *podIndex, Out: *out, DiskQueue: *diskQueue, Outage: *outage,
		Endpoints: splitList(*endpoints),
		Command:   "go run ./e2e/cmd/loadbench " + strings.Join(os.Args[1:], " "), Log: os.Stderr,
	}
	cfg.Variants, cfg.Churn = variants, *churn
	cfg.VMAgent, cfg.VMAgentRelabel, cfg.VMAgentArgs = *vmagent || *vmagentRelabel, *vmagentRelabel, vmagentArgs
	if *pprof {
		cfg.Pprof = strings.TrimSuffix(*out, ".txt")
	}
	if *timeout == 0 {
		perMode := time.Duration(*warmup+*rounds+3)*(*interval) + 3*time.Minute
		if *churn > 0 {
			perMode += time.Duration(*rounds) * (*interval)
		}
		*timeout = 5*time.Minute + time.Duration(len(modes)*len(variants))*perMode
		if *vmagent || *vmagentRelabel {
			*timeout += perMode
		}
		if *outage > 0 {
			*timeout = 10*time.Minute + 3*(*outage)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	report, results, err := loadbench.Run(ctx, cfg)
	fmt.Print(report)
	if err != nil {
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "loadbench: report written to %s\n", *out)
	for _, r := range results {
		if r.Err != nil || len(r.Problems) > 0 {
			os.Exit(1)
		}
	}
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "loadbench:", err)
	os.Exit(1)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
