// Package archtest holds the import rules of the module's packages (see
// docs/ARCHITECTURE.md) as a test, so that they stay true.
package archtest

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const mod = "github.com/kubelet-meta-proxy/kubelet-meta-proxy/"

// deps returns the transitive imports (non-test) of pkg, as go list sees them.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", mod+pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	return strings.Fields(string(out))
}

func TestImportRules(t *testing.T) {
	for _, rule := range []struct {
		pkg    string
		allow  func(dep string) bool // nil: anything not forbidden
		forbid []string              // prefixes
	}{
		// The data model is the leaf everything shares: the standard library
		// and hashing only.
		{pkg: "internal/model", allow: func(d string) bool {
			return !strings.Contains(strings.SplitN(d, "/", 2)[0], ".") || d == "github.com/cespare/xxhash/v2" || d == mod+"internal/model"
		}},
		// Enrichment is pure: no network, no TLS, no Kubernetes client.
		{pkg: "internal/enrich", forbid: []string{"net/http", "crypto/tls", "k8s.io/", mod + "internal/remotewrite", mod + "internal/scrape"}},
		// Scraping never depends on the receiver side.
		{pkg: "internal/scrape", forbid: []string{mod + "internal/remotewrite", mod + "internal/relay", mod + "internal/view"}},
		// Remote write is a sink: it knows the data model, not its producers.
		{pkg: "internal/remotewrite", forbid: []string{mod + "internal/scrape", mod + "internal/enrich", mod + "internal/relay", mod + "internal/nsindex", mod + "internal/view", "k8s.io/"}},
		// The --config.file reader maps Prometheus's config onto remote write's; it knows no producer either
		// (Prometheus's config package does bring client-go, which is why it is not in remotewrite).
		{pkg: "internal/promconfig", forbid: []string{mod + "internal/scrape", mod + "internal/enrich", mod + "internal/relay", mod + "internal/nsindex", mod + "internal/view"}},
	} {
		ds := deps(t, rule.pkg)
		if len(ds) == 0 {
			t.Fatalf("%s: go list found no dependencies", rule.pkg)
		}
		for _, d := range ds {
			if rule.allow != nil && !rule.allow(d) {
				t.Errorf("%s imports %s (directly or not): only the standard library and xxhash are allowed", rule.pkg, d)
			}
			for _, f := range rule.forbid {
				if d == strings.TrimSuffix(f, "/") || strings.HasPrefix(d, f) {
					t.Errorf("%s imports %s (directly or not), which it must not", rule.pkg, d)
				}
			}
		}
	}
}

// Flags and their parsing live in cmd/ only: no library package may import
// a flag package.
func TestNoFlagPackagesOutsideCmd(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, mod+"internal/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 5 {
		t.Fatalf("go list listed only %d packages", len(lines))
	}
	for _, line := range lines {
		f := strings.Fields(line)
		for _, imp := range f[1:] {
			if imp == "flag" || strings.HasPrefix(imp, "github.com/spf13/") {
				t.Errorf("%s imports %s: flags belong in cmd/", f[0], imp)
			}
		}
	}
}

// The linker drops the exported methods nothing calls, unless a method
// looked up by name at run time (reflect's MethodByName, text/template's
// field evaluation) is reachable: then it keeps every exported method of
// every type, all of k8s.io/api's generated code included. That is what
// golang.org/x/net/trace did, whose init serves html/template pages: the
// binary doubled (34 -> 71 MB) and its idle file-backed RSS went from 23 to
// 43 MB. go-conntrack's import of it is replaced (third_party/conntrack),
// gRPC's is left out by the grpcnotrace tag that every build of the relay
// passes (Makefile GOTAGS, Dockerfile, e2e builds). This links the relay
// and fails if such a method lookup is reachable, naming the path to it.
func TestRelayKeepsMethodPruning(t *testing.T) {
	if testing.Short() {
		t.Skip("links the relay")
	}
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "grpcnotrace", "-ldflags=-dumpdep", "-o", filepath.Join(t.TempDir(), "relay"), mod+"cmd/kubelet-meta-proxy")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v\n%.2000s", err, stderr.String())
	}
	// -dumpdep prints "from -> to" in the order the linker marks symbols
	// reachable, so the first edge to a symbol is the path that kept it.
	parent := map[string]string{}
	const mark = " <ReflectMethod>"
	culprit, unwanted := "", ""
	sc := bufio.NewScanner(&stderr)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		from, to, ok := strings.Cut(sc.Text(), " -> ")
		if !ok {
			continue
		}
		if culprit == "" && strings.HasSuffix(from, mark) {
			culprit = strings.TrimSuffix(from, mark)
		}
		from, to = strings.TrimSuffix(from, mark), strings.TrimSuffix(to, mark)
		if unwanted == "" && strings.HasPrefix(to, "google.golang.org/api/transport") {
			unwanted = to
		}
		if _, seen := parent[to]; !seen {
			parent[to] = from
		}
	}
	if len(parent) < 1000 {
		t.Fatalf("-dumpdep printed %d edges: the linker's output format changed?", len(parent))
	}
	pathTo := func(sym string) string {
		path := []string{sym}
		for s := parent[sym]; s != "" && len(path) < 40; s = parent[s] {
			path = append(path, s)
		}
		return strings.Join(path, "\n  <- ")
	}
	if culprit != "" {
		t.Errorf("the relay reaches a method lookup by name, so the linker keeps every exported method (see third_party/conntrack/README.md); reached through:\n  %s", pathTo(culprit))
	}
	// google_iam's transport (internal/remotewrite/googleiam.go) is built
	// on golang.org/x/oauth2/google, not google.golang.org/api/transport,
	// which links gRPC's client and Google's mTLS handshakers (2 MB,
	// resident). Prometheus's config still imports the latter, so their
	// package initializers stay; their code must not.
	if unwanted != "" {
		t.Errorf("the relay links google.golang.org/api/transport; reached through:\n  %s", pathTo(unwanted))
	}
}

// The relay's Kubernetes client is internal/kubeclient: client-go's typed
// clientset, its informers and listers (and metadatainformer, which imports
// them) link every API group of k8s.io/api with their apply configurations,
// 13 MB of a 42 MB binary, nearly all of it resident. The binary may link
// the API groups it decodes and no other.
func TestRelayLinksOnlyItsAPIGroups(t *testing.T) {
	allowedAPI := map[string]bool{"k8s.io/api/core/v1": true, "k8s.io/api/authentication/v1": true, "k8s.io/api/authorization/v1": true}
	forbid := []string{"k8s.io/client-go/kubernetes", "k8s.io/client-go/informers", "k8s.io/client-go/listers/",
		"k8s.io/client-go/applyconfigurations/", "k8s.io/client-go/metadata/metadatainformer", "k8s.io/client-go/discovery",
		"k8s.io/client-go/testing", mod + "internal/kubeclient/clientset"}
	ds := deps(t, "cmd/kubelet-meta-proxy")
	var api int
	for _, d := range ds {
		if strings.HasPrefix(d, "k8s.io/api/") {
			api++
			if !allowedAPI[d] {
				t.Errorf("the relay links %s: only core/v1, authentication/v1 and authorization/v1 (internal/kubeclient)", d)
			}
		}
		for _, f := range forbid {
			if d == strings.TrimSuffix(f, "/") || strings.HasPrefix(d, f) {
				t.Errorf("the relay links %s (directly or not): use internal/kubeclient", d)
			}
		}
	}
	if api == 0 {
		t.Fatal("go list found no k8s.io/api package in the relay: the test checks nothing")
	}
}
