// Command bed runs the e2e test bed with the relay for a demo (make demo / make demo-down).
//
//	bed up   [--state .demo] [--nodes 3] [--background] [-- relay args...]
//	bed down [--state .demo]
//
// `up --background` starts itself detached, waits until enriched series are in Prometheus and
// an alert reached the frontend webhook, prints how to look at it, and returns; the detached
// process keeps the bed up until `down` (SIGTERM) stops it and removes everything.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

type state struct {
	PID             int    `json:"pid"`
	Dir             string `json:"dir"`
	Netns           string `json:"netns"`
	PrometheusURL   string `json:"prometheusURL"`
	AlertmanagerURL string `json:"alertmanagerURL"`
	APIServerURL    string `json:"apiserverURL"`
	RelayKubeconfig string `json:"relayKubeconfig"`
	RelayMetrics    string `json:"relayMetrics"`
	AdminKubeconfig string `json:"adminKubeconfig"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bed up|down [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(os.Args[2:])
	case "down":
		err = down(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bed:", err)
		os.Exit(1)
	}
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	stateDir := fs.String("state", ".demo", "state directory")
	nodes := fs.Int("nodes", 3, "nodes")
	background := fs.Bool("background", false, "run detached; return once the demo is ready")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the demo to be ready")
	_ = fs.Parse(args)
	relayArgs := fs.Args()
	abs, err := filepath.Abs(*stateDir)
	if err != nil {
		return err
	}
	*stateDir = abs
	if b, err := os.ReadFile(filepath.Join(*stateDir, "state.json")); err == nil {
		var st state
		if json.Unmarshal(b, &st) == nil && st.PID > 0 && syscall.Kill(st.PID, 0) == nil {
			return fmt.Errorf("a demo is already running (pid %d); make demo-down first", st.PID)
		}
	}
	if *background {
		return startBackground(*stateDir, *nodes, *timeout, relayArgs)
	}
	return runForeground(*stateDir, *nodes, *timeout, relayArgs)
}

func startBackground(stateDir string, nodes int, timeout time.Duration, relayArgs []string) error {
	if err := os.RemoveAll(stateDir); err != nil {
		return err
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(stateDir, "bed.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	a := []string{"up", "--state", stateDir, "--nodes", strconv.Itoa(nodes), "--timeout", timeout.String(), "--"}
	cmd := exec.Command(self, append(a, relayArgs...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	fmt.Printf("bed: starting in the background (pid %d, log %s) ...\n", pid, logf.Name())
	deadline := time.Now().Add(timeout + time.Minute)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(stateDir, "summary.txt")); err == nil {
			fmt.Print(string(b))
			return nil
		}
		if syscall.Kill(pid, 0) != nil {
			b, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("the bed exited before it was ready:\n%s", lastLines(string(b), 60))
		}
		time.Sleep(time.Second)
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	return fmt.Errorf("the demo was not ready within %s; see %s", timeout, logf.Name())
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func runForeground(stateDir string, nodes int, timeout time.Duration, relayArgs []string) error {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	start := time.Now()
	b, err := bed.Start(ctx, bed.Options{
		Nodes: nodes, Dir: filepath.Join(stateDir, "bed"), KeepDir: true,
		NoSignalHandler: true, Log: os.Stdout,
	})
	if err != nil {
		return err
	}
	defer b.Stop()
	fmt.Printf("bed: up in %s\n", time.Since(start).Round(time.Millisecond))
	admin := filepath.Join(stateDir, "admin.kubeconfig")
	if err := os.WriteFile(admin, []byte(b.Kubeconfig("admin", b.AdminToken)), 0o600); err != nil {
		return err
	}
	st := state{
		PID: os.Getpid(), Dir: b.Dir, Netns: b.Netns, PrometheusURL: b.PrometheusURL,
		AlertmanagerURL: b.AlertmanagerURL, APIServerURL: b.APIServerURL,
		RelayKubeconfig: b.RelayKubeconfig, AdminKubeconfig: admin,
	}
	writeState := func() error {
		j, _ := json.MarshalIndent(st, "", "  ")
		return os.WriteFile(filepath.Join(stateDir, "state.json"), j, 0o644)
	}
	if err := writeState(); err != nil {
		return err
	}
	r, err := b.StartRelay(ctx, relayArgs...)
	if err != nil {
		return err
	}
	st.RelayMetrics = r.MetricsURL
	if err := writeState(); err != nil {
		return err
	}
	fmt.Printf("bed: relay up: %s\n", strings.Join(r.Args, " "))
	wctx, wcancel := context.WithTimeout(ctx, timeout)
	defer wcancel()
	const q = `sum by (team, namespace) (container_memory_working_set_bytes{container!="", namespace!=""})`
	res, err := b.WaitQuery(wctx, q, timeout, func(s []bed.Sample) bool {
		teams := map[string]bool{}
		for _, x := range s {
			teams[x.Metric["team"]] = true
		}
		return teams["frontend"] && teams["backend"]
	})
	if err != nil {
		return fmt.Errorf("%w\nrelay log:\n%s", err, r.Logs(40))
	}
	alert, err := b.Webhook.WaitAlert(wctx, "frontend", "firing", map[string]string{"alertname": bed.AlertName}, timeout)
	if err != nil {
		return err
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nkubelet-meta-proxy demo is up (%d nodes, bed up in %s)\n\n", nodes, time.Since(start).Round(time.Second))
	fmt.Fprintf(&sb, "  Prometheus:    %s\n  Alertmanager:  %s\n  relay /metrics: %s\n  kube-apiserver: %s (kubeconfig %s)\n\n",
		b.PrometheusURL, b.AlertmanagerURL, r.MetricsURL, b.APIServerURL, admin)
	fmt.Fprintf(&sb, "  PromQL: %s\n", q)
	sort.Slice(res, func(i, j int) bool { return res[i].Metric["namespace"] < res[j].Metric["namespace"] })
	for _, s := range res {
		fmt.Fprintf(&sb, "    {namespace=%q, team=%q}  %.0f\n", s.Metric["namespace"], s.Metric["team"], s.V)
	}
	fmt.Fprintf(&sb, "  (unlabelled-service has no team label; node-level series carry none)\n\n")
	fmt.Fprintf(&sb, "  Alert %s delivered to the frontend webhook: %v\n", bed.AlertName, sortedLabels(alert.Labels))
	fmt.Fprintf(&sb, "  Receivers so far: frontend %d, backend %d, default %d alerts\n\n",
		len(b.Webhook.Alerts("frontend")), len(b.Webhook.Alerts("backend")), len(b.Webhook.Alerts("default")))
	fmt.Fprintf(&sb, "  Try: curl -s '%s/api/v1/query' --data-urlencode 'query=%s'\n", b.PrometheusURL, q)
	fmt.Fprintf(&sb, "       kubectl --kubeconfig %s label ns frontend-service2 team=backend --overwrite\n", admin)
	fmt.Fprintf(&sb, "  Logs: %s/*.log\n  Stop: make demo-down\n", b.Dir)
	fmt.Print(sb.String())
	if err := os.WriteFile(filepath.Join(stateDir, "summary.txt"), []byte(sb.String()), 0o644); err != nil {
		return err
	}
	<-ctx.Done()
	fmt.Println("bed: stopping")
	return nil
}

func sortedLabels(m map[string]string) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s=%q", k, m[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func down(args []string) error {
	fs := flag.NewFlagSet("down", flag.ExitOnError)
	stateDir := fs.String("state", ".demo", "state directory")
	_ = fs.Parse(args)
	b, err := os.ReadFile(filepath.Join(*stateDir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		fmt.Println("bed: no demo running")
		bed.SweepStale(context.Background())
		return os.RemoveAll(*stateDir)
	}
	if err != nil {
		return err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	if st.PID > 0 && syscall.Kill(st.PID, syscall.SIGTERM) == nil {
		fmt.Printf("bed: stopping pid %d ...\n", st.PID)
		deadline := time.Now().Add(90 * time.Second)
		for time.Now().Before(deadline) && syscall.Kill(st.PID, 0) == nil {
			time.Sleep(300 * time.Millisecond)
		}
		if syscall.Kill(st.PID, 0) == nil {
			fmt.Println("bed: still running, killing it")
			_ = syscall.Kill(st.PID, syscall.SIGKILL)
			time.Sleep(time.Second)
		}
	}
	// Whatever a killed bed left: its netns (children die with it through Pdeathsig).
	bed.SweepStale(context.Background())
	if st.Netns != "" && exec.Command("ip", "netns", "pids", st.Netns).Run() == nil {
		_ = exec.Command("ip", "netns", "del", st.Netns).Run()
	}
	fmt.Println("bed: stopped; netns", st.Netns, "removed")
	return os.RemoveAll(*stateDir)
}
