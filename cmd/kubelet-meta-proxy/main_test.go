package main

import (
	"context"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
)

func TestNormalizeArgs(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"-node-port=443"}, []string{"--node-port=443"}},
		{[]string{"-node-port", "443"}, []string{"--node-port", "443"}},
		{[]string{"--node-port=443"}, []string{"--node-port=443"}},
		{[]string{"-h"}, []string{"-h"}},
		{[]string{"-o", "out.txt"}, []string{"-o", "out.txt"}},
		{[]string{"-1"}, []string{"-1"}},
		{[]string{"-node-port", "-1"}, []string{"--node-port", "-1"}},
		{[]string{"run", "-enable-http2=false", "--", "-node-port=443", "-x"}, []string{"run", "--enable-http2=false", "--", "-node-port=443", "-x"}},
		{[]string{"-target=http://a/b?x=-y"}, []string{"--target=http://a/b?x=-y"}},
		{[]string{"-"}, []string{"-"}},
		{[]string{"-9x"}, []string{"-9x"}},
		{[]string{}, []string{}},
	} {
		if got := normalizeArgs(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("normalizeArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// readmeArgs are the original project's DaemonSet args (its README).
var readmeArgs = []string{"-node-port=443", "-enable-http2=false", "-kube-apiserver=kubernetes.default.svc", "-node-name-or-ip=node-a", "-metrics-port=8080"}

// runFlags binds a runOptions to a flag set as newRunCommand does.
func runFlags() (*runOptions, *pflag.FlagSet) {
	o := &runOptions{}
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.AddFlags(fs)
	return o, fs
}

func TestReadmeArgsParseAndValidate(t *testing.T) {
	cmd := newRunCommand()
	if err := cmd.ParseFlags(normalizeArgs(readmeArgs)); err != nil {
		t.Fatalf("run does not parse the README's args: %v", err)
	}
	for name, want := range map[string]string{"node-port": "443", "enable-http2": "false", "kube-apiserver": "kubernetes.default.svc", "node-name-or-ip": "node-a", "metrics-port": "8080"} {
		f := cmd.Flags().Lookup(name)
		if f == nil || !f.Changed || f.Value.String() != want {
			t.Errorf("--%s: %v", name, f)
		}
	}
	// The same flag set, bound to options we can see, validates.
	o, fs := runFlags()
	if err := fs.Parse(normalizeArgs(readmeArgs)); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("README args do not validate: %v", err)
	}
	nto, err := o.nodeTargetOptions()
	if err != nil {
		t.Fatal(err)
	}
	if nto.Port != 443 || nto.NameOrIP != "node-a" || nto.Direct || nto.Path != "/metrics/cadvisor" || nto.Job != "kubelet" {
		t.Fatalf("node target options %+v", nto)
	}
	// Every flag of runFlags is a flag of the command, and the reverse.
	fs.VisitAll(func(f *pflag.Flag) {
		if cmd.Flags().Lookup(f.Name) == nil {
			t.Errorf("--%s missing from the run command", f.Name)
		}
	})
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if fs.Lookup(f.Name) == nil && f.Name != "help" {
			t.Errorf("--%s of the run command not covered by this test", f.Name)
		}
	})
}

// execute runs the command as main does, with a context that is already
// done, so that args which unexpectedly validate cannot start a relay.
func execute(t *testing.T, cmd *cobra.Command, args []string) error {
	t.Helper()
	root := &cobra.Command{Use: "kubelet-meta-proxy", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(cmd)
	root.SetArgs(normalizeArgs(args))
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%q did not return", args)
		return nil
	}
}

func TestBadValuesRefused(t *testing.T) {
	t.Setenv("POD_NAME", "kubelet-meta-proxy-7d9f8b")
	for _, tc := range []struct {
		args []string
		want []string // substrings of the error
	}{
		{[]string{"-mode=foo"}, []string{"--mode", `"foo"`}},
		{[]string{"--scrape-interval=10s", "--scrape-timeout=20s"}, []string{"--scrape-timeout=20s", "--scrape-interval"}},
		{[]string{"--scrape-interval=0s"}, []string{"--scrape-interval"}},
		{[]string{"--body-size-limit=abc"}, []string{"--body-size-limit", "abc"}},
		{[]string{"--body-size-limit=-1Mi"}, []string{"--body-size-limit"}},
		{[]string{"--shard-count=3"}, []string{"--shard-count=3", "POD_NAME", "ordinal"}},
		{[]string{"--shard-count=3", "--shard-index=3"}, []string{"--shard-count=3", "shard index 3"}},
		{[]string{"--shard-count=0"}, []string{"--shard-count=0"}},
		{[]string{"--label-prefix=9x"}, []string{"--label-prefix", "9x"}},
		{[]string{"--log-format=xml"}, []string{"--log-format", "xml"}},
		{[]string{"--log-level=loud"}, []string{"--log-level", "loud"}},
		{[]string{"--max-concurrency=0"}, []string{"--max-concurrency"}},
		{[]string{"--node-port=70000"}, []string{"--node-port=70000"}},
		{[]string{"--node-ip=not-an-ip", "--node-name-or-ip=n"}, []string{"--node-ip"}},
		{[]string{"--node-ip=10.0.0.1"}, []string{"--node-ip needs --node-name-or-ip"}},
		{[]string{"--node-selector=a in (b"}, []string{"--node-selector"}},
		{[]string{"--node-cadvisor-path=metrics"}, []string{"--node-cadvisor-path"}},
		{[]string{"--node-label=a-b"}, []string{"--node-label"}},
		{[]string{"--target=ftp://x/metrics"}, []string{"--target"}},
		{[]string{"--kubeconfig=/does/not/exist"}, []string{"--kubeconfig"}},
		{[]string{"--metrics-port=-1"}, []string{"--metrics-port"}},
		{[]string{"--tls-cert-file=a.pem"}, []string{"--tls-cert-file"}},
		{[]string{"--cache-sync-timeout=0s"}, []string{"--cache-sync-timeout"}},
		{[]string{"--mode=kubelet", "--kubelet-ca-file=ca.crt", "--kubelet-insecure-skip-verify"}, []string{"--kubelet-insecure-skip-verify and --kubelet-ca-file"}},
		{[]string{"-node-port=abc"}, []string{"node-port", "abc"}},
		{[]string{"-no-such-flag=1"}, []string{"no-such-flag"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			err := execute(t, newRunCommand(), append([]string{"run"}, tc.args...))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestShardFromPodName(t *testing.T) {
	for _, tc := range []struct {
		pod   string
		count int
		want  scrape.Shard
		ok    bool
	}{
		{"kubelet-meta-proxy-2", 3, scrape.Shard{Index: 2, Count: 3}, true},
		{"kubelet-meta-proxy-0", 3, scrape.Shard{Index: 0, Count: 3}, true},
		{"kubelet-meta-proxy-3", 3, scrape.Shard{}, false},
		{"kubelet-meta-proxy", 3, scrape.Shard{}, false},
		{"anything", 1, scrape.Shard{Index: 0, Count: 1}, true},
	} {
		t.Setenv("POD_NAME", tc.pod)
		o := scrapeOptions{ShardIndex: -1, ShardCount: tc.count}
		got, err := o.shard()
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("POD_NAME=%s count %d: %+v %v", tc.pod, tc.count, got, err)
		}
	}
}

func TestScrapeOnceParsesSharedFlags(t *testing.T) {
	cmd := newScrapeOnceCommand()
	if err := cmd.ParseFlags(normalizeArgs([]string{"-node=node-a", "-o", "out.txt", "-namespace-labels=team,app.kubernetes.io/part-of", "-mode=kubelet"})); err != nil {
		t.Fatal(err)
	}
	if v, _ := cmd.Flags().GetString("output"); v != "out.txt" {
		t.Fatalf("-o: %q", v)
	}
	if err := execute(t, newScrapeOnceCommand(), []string{"scrape-once", "-mode=foo"}); err == nil || !strings.Contains(err.Error(), "--mode") {
		t.Fatalf("scrape-once -mode=foo: %v", err)
	}
}

// A kubelet's 401/403 names the subresource its authorizer checked for the
// scraped path.
func TestKubeletPermission(t *testing.T) {
	for path, want := range map[string]string{
		"/metrics/cadvisor": "get nodes/metrics", "/metrics": "get nodes/metrics", "/metrics/resource": "get nodes/metrics",
		"/metricsx": "get nodes/proxy", "/pods": "get nodes/proxy", "/stats/summary": "get nodes/stats",
		"/logs/": "get nodes/log", "/spec/": "get nodes/spec",
	} {
		if got := kubeletPermission(path); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
}

// Kubelet certificates are verified with --kubelet-ca-file, else the
// service account's cluster CA; --kubelet-insecure-skip-verify uses none.
func TestKubeletCAFile(t *testing.T) {
	for _, tc := range []struct {
		o    kubeOptions
		want string
	}{
		{kubeOptions{}, serviceAccountDir + "/ca.crt"},
		{kubeOptions{KubeletCAFile: "/etc/kubelet-ca/ca.crt"}, "/etc/kubelet-ca/ca.crt"},
		{kubeOptions{KubeletInsecureSkipVerify: true}, ""},
	} {
		if got := tc.o.kubeletCAFile(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.o, got, tc.want)
		}
	}
}
