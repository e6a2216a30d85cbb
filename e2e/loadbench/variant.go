package loadbench

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// Relay modes of a Variant.
const (
	ModeKubelet   = "kubelet"
	ModeAPIServer = "apiserver"
)

// Variant is one way of running the relay: straight to the kubelets, or through the
// kube-apiserver's node proxy with a protocol (--node-proxy-protocol) and gzip
// (--node-proxy-gzip) between the relay and the apiserver. Empty Protocol or Gzip leaves
// the relay's default.
type Variant struct {
	Mode     string
	Protocol string // "http/1.1", "h2" or ""
	Gzip     string // "on", "off" or ""
}

// Variants is every combination of modes, protocols and gzip settings (the last two only
// for apiserver mode; empty lists leave the relay's defaults).
func Variants(modes, protocols, gzips []string) ([]Variant, error) {
	if len(modes) == 0 {
		modes = []string{ModeKubelet}
	}
	for _, p := range protocols {
		if p != "http/1.1" && p != "h2" {
			return nil, fmt.Errorf("node proxy protocol %q: want http/1.1 or h2", p)
		}
	}
	for _, g := range gzips {
		if g != "on" && g != "off" {
			return nil, fmt.Errorf("node proxy gzip %q: want on or off", g)
		}
	}
	protocols, gzips = orDefault(protocols), orDefault(gzips)
	var out []Variant
	for _, m := range modes {
		switch m {
		case ModeKubelet:
			out = append(out, Variant{Mode: m})
		case ModeAPIServer:
			for _, p := range protocols {
				for _, g := range gzips {
					out = append(out, Variant{Mode: m, Protocol: p, Gzip: g})
				}
			}
		default:
			return nil, fmt.Errorf("mode %q: want kubelet or apiserver", m)
		}
	}
	return out, nil
}

func orDefault(l []string) []string {
	if len(l) == 0 {
		return []string{""}
	}
	return l
}

// Name is how the report names the variant: "kubelet", "apiserver h2 gzip".
func (v Variant) Name() string {
	if v.Mode == "" {
		return ModeKubelet
	}
	parts := []string{v.Mode}
	if v.Protocol != "" {
		parts = append(parts, strings.TrimPrefix(v.Protocol, "http/"))
	}
	switch v.Gzip {
	case "on":
		parts = append(parts, "gzip")
	case "off":
		parts = append(parts, "identity")
	}
	return strings.Join(parts, " ")
}

// slug names the variant's profile files.
func (v Variant) slug() string {
	return strings.NewReplacer(" ", "-", ".", "").Replace(v.Name())
}

func (v Variant) apiserver() bool { return v.Mode == ModeAPIServer }

// args are the relay's flags for the mode.
func (v Variant) args(b *bed.Bed) []string {
	if !v.apiserver() {
		return []string{"--mode=kubelet", "--kubeconfig", b.RelayKubeconfig, "--kubelet-insecure-skip-verify", "--kubelet-token-file", b.RelayTokenFile}
	}
	a := []string{"--mode=apiserver", "--kubeconfig", b.RelayKubeconfig}
	if v.Protocol != "" {
		a = append(a, "--node-proxy-protocol="+v.Protocol)
	}
	if v.Gzip != "" {
		a = append(a, "--node-proxy-gzip="+map[string]string{"on": "true", "off": "false"}[v.Gzip])
	}
	return a
}

// label names a result in the report: the enrichment mode, after the variant when the run
// has more than kubelet mode.
func (r *Result) label() string {
	if r.Variant.Mode == "" {
		return onOff(r.Enrich)
	}
	return r.Variant.Name() + ", enrich " + onOff(r.Enrich)
}

// ProcWindow is another process's cost over a window (the kube-apiserver's).
type ProcWindow struct {
	CPU time.Duration
	// PeakRSS is VmHWM at the end of the window, reset when the relay started (so it covers
	// this relay run only); MaxRSS is VmRSS sampled every 250ms in the window.
	PeakRSS, MaxRSS int64
}

// procWindow measures pid from now until end.
type procWindow struct {
	pid  int
	cpu0 time.Duration
	rss  *rssSampler
}

// resetPeak resets pid's VmHWM to its current RSS (Linux: "5" to clear_refs).
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

func startProcWindow(pid int) (*procWindow, error) {
	cpu, err := ProcCPU(pid)
	if err != nil {
		return nil, err
	}
	return &procWindow{pid: pid, cpu0: cpu, rss: sampleRSS(pid, 250*time.Millisecond)}, nil
}

func (w *procWindow) end() (*ProcWindow, error) {
	w.rss.stop()
	cpu, err := ProcCPU(w.pid)
	if err != nil {
		return nil, err
	}
	_, hwm, err := ProcMem(w.pid)
	if err != nil {
		return nil, err
	}
	maxRSS, _ := w.rss.stats()
	return &ProcWindow{CPU: cpu - w.cpu0, PeakRSS: hwm, MaxRSS: maxRSS}, nil
}

// variantReport is the table of the relay variants (apiserver cost, and the relay's
// against kubelet mode with the same enrichment) and of the churn windows.
func variantReport(results []*Result) string {
	var sb strings.Builder
	multi := slices.ContainsFunc(results, func(r *Result) bool { return r.Variant.apiserver() })
	churn := slices.ContainsFunc(results, func(r *Result) bool { return r.Churn != nil })
	if !multi && !churn {
		return ""
	}
	base := map[bool]float64{}
	for _, r := range results {
		if r.Err == nil && !r.Variant.apiserver() {
			if _, ok := base[r.Enrich]; !ok {
				base[r.Enrich] = r.CPUPerMillion()
			}
		}
	}
	if multi {
		sb.WriteString("\nrelay variants (same kubelets, same apiserver; apiserver peak RSS is VmHWM reset at the relay's start):\n")
		tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "relay\tenrich\tCPU-s/M\tvs kubelet mode\trelay peak RSS MiB\tapiserver CPU ms/scrape\tapiserver cores\tapiserver peak RSS MiB\tapiserver max RSS MiB (window)\tkubelet bytes/scrape\tscrape s (mean)\t")
		for _, r := range results {
			if r.Err != nil {
				fmt.Fprintf(tw, "%s\t%s\terror\t\t\t\t\t\t\t\t\t\n", r.Variant.Name(), onOff(r.Enrich))
				continue
			}
			vs := "-"
			if b, ok := base[r.Enrich]; ok && b > 0 {
				vs = fmt.Sprintf("%+.0f%%", 100*(r.CPUPerMillion()/b-1))
			}
			api := "\t\t\t\t"
			if a := r.APIServer; a != nil {
				api = fmt.Sprintf("%.1f\t%.2f\t%.1f\t%.1f\t", 1000*a.CPU.Seconds()/max(r.ScrapesWindow, 1), a.CPU.Seconds()/r.Window.Seconds(), mib(a.PeakRSS), mib(a.MaxRSS))
			}
			d := r.Self1.Get("kubelet_meta_proxy_scrape_duration_seconds_sum") - r.Self0.Get("kubelet_meta_proxy_scrape_duration_seconds_sum")
			fmt.Fprintf(tw, "%s\t%s\t%.3f\t%s\t%.1f\t%s%.0f\t%.3f\t\n", r.Variant.Name(), onOff(r.Enrich), r.CPUPerMillion(), vs, mib(r.PeakRSS), api,
				float64(r.KubeletBytes)/max(r.ScrapesWindow, 1), d/max(r.ScrapesWindow, 1))
		}
		tw.Flush()
	}
	if churn {
		sb.WriteString("\nchurn (same relay, after its steady window: churned pods replaced on every node at every scrape):\n")
		tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "relay\tenrich\tsteady CPU-s/M\tchurn CPU-s/M\tchurn/steady\tpods replaced/node/round\tstale markers/round\tsamples/s\tpeak RSS MiB (steady, churn)\tapiserver CPU ms/scrape\tgenerations served (not ready)\tscrapes/node\t")
		for _, r := range results {
			c := r.Churn
			if c == nil || r.Err != nil {
				continue
			}
			api := "-"
			if c.APIServer != nil {
				api = fmt.Sprintf("%.1f", 1000*c.APIServer.CPU.Seconds()/max(c.Scrapes, 1))
			}
			fmt.Fprintf(tw, "%s\t%s\t%.3f\t%.3f\t%.2fx\t%d\t%.0f\t%.0f\t%.1f, %.1f\t%s\t%d (%d)\t%s\t\n", r.Variant.Name(), onOff(r.Enrich),
				r.CPUPerMillion(), c.CPUPerMillion(), c.CPUPerMillion()/max(r.CPUPerMillion(), 1e-9), c.PodsPerRound,
				c.Stale/max(float64(c.Rounds), 1), float64(c.Delivered)/c.Window.Seconds(), mib(r.PeakRSS), mib(c.PeakRSS), api,
				c.Generations, c.NotReady, nodeScrapes(c.NodeScrapes))
		}
		tw.Flush()
	}
	return sb.String()
}

// pprofName is the profile files' middle part: on|off, after the variant in apiserver mode.
func pprofName(v Variant, enrich bool) string {
	if v.Mode == "" {
		return onOff(enrich)
	}
	return v.slug() + "-" + onOff(enrich)
}
