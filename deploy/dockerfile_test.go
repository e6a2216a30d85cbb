package deploy

import (
	"bytes"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// No container engine runs where these tests run, so the Dockerfile is checked by construction: its
// instructions, and its `go build` command run as written on exactly the files .dockerignore lets in.

type instruction struct {
	cmd  string // upper case
	args string
}

func dockerfile(t *testing.T) []instruction {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		if s := cur.String(); s != "" {
			cmd, args, _ := strings.Cut(s, " ")
			out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		}
		cur.Reset()
	}
	return out
}

// ldflagsXPaths returns the -X variable paths of a linker flag string.
func ldflagsXPaths(s string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`-X\s+([\w./-]+)=`).FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	slices.Sort(out)
	return out
}

func goBuildRun(t *testing.T, ins []instruction) string {
	t.Helper()
	for _, in := range ins {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			return in.args
		}
	}
	t.Fatal("Dockerfile has no RUN ... go build")
	return ""
}

func TestDockerfileByConstruction(t *testing.T) {
	ins := dockerfile(t)
	var froms []string
	stageArgs := map[int][]string{}
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			froms = append(froms, in.args)
		case "ARG":
			name, _, _ := strings.Cut(in.args, "=")
			stageArgs[len(froms)-1] = append(stageArgs[len(froms)-1], name)
		}
	}
	if len(froms) != 2 {
		t.Fatalf("want a two-stage build, have FROM %v", froms)
	}
	builder := regexp.MustCompile(`^(?:--platform=\S+\s+)?golang:(\d+\.\d+)(?:\S*)\s+AS\s+builder$`).FindStringSubmatch(froms[0])
	if builder == nil {
		t.Fatalf("first stage %q, want golang:X.Y AS builder", froms[0])
	}
	gomod, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goDirective := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goDirective == nil || string(goDirective[1]) != builder[1] {
		t.Errorf("builder golang:%s does not match go.mod's go %s", builder[1], goDirective[1])
	}
	if froms[1] != "gcr.io/distroless/static:nonroot" {
		t.Errorf("final stage FROM %q, want gcr.io/distroless/static:nonroot", froms[1])
	}
	for _, a := range []string{"VERSION", "COMMIT"} {
		if !slices.Contains(stageArgs[0], a) {
			t.Errorf("builder stage lacks ARG %s", a)
		}
	}

	// The final stage: the binary from the builder, USER 65532:65532, ENTRYPOINT the binary.
	final := ins[slices.IndexFunc(ins, func(in instruction) bool { return in.cmd == "FROM" && in.args == froms[1] }):]
	var user, entry, copyFrom string
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "COPY":
			copyFrom = in.args
		case "RUN":
			t.Errorf("RUN in the distroless stage: %s", in.args)
		}
	}
	if user != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532", user)
	}
	if entry != `["/kubelet-meta-proxy"]` {
		t.Errorf("ENTRYPOINT %s, want [\"/kubelet-meta-proxy\"]", entry)
	}
	run := goBuildRun(t, ins)
	out := regexp.MustCompile(`-o\s+(\S+)`).FindStringSubmatch(run)
	if out == nil || copyFrom != "--from=builder "+out[1]+" /kubelet-meta-proxy" {
		t.Errorf("final COPY %q does not copy the builder's -o output %v to /kubelet-meta-proxy", copyFrom, out)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/kubelet-meta-proxy"} {
		if !strings.Contains(run, want) {
			t.Errorf("go build RUN lacks %s: %s", want, run)
		}
	}
	for _, want := range []string{"internal/version.Version=${VERSION}", "internal/version.Commit=${COMMIT}"} {
		if !strings.Contains(run, want) {
			t.Errorf("go build RUN does not stamp %s: %s", want, run)
		}
	}
	// The same -X variables as `make build`.
	mk, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	ld := regexp.MustCompile(`(?m)^LDFLAGS :=(.*)$`).FindSubmatch(mk)
	if ld == nil {
		t.Fatal("Makefile has no LDFLAGS")
	}
	if a, b := ldflagsXPaths(run), ldflagsXPaths(string(ld[1])); len(a) != 2 || !slices.Equal(a, b) {
		t.Errorf("Dockerfile -X %v, Makefile -X %v", a, b)
	}
	// The same build tags as `make build` (grpcnotrace keeps the binary half the size).
	tags := regexp.MustCompile(`(?m)^GOTAGS :=\s*(.*)$`).FindSubmatch(mk)
	if tags == nil {
		t.Fatal("Makefile has no GOTAGS")
	}
	if want := "-tags " + strings.TrimSpace(string(tags[1])); !strings.Contains(run, want) {
		t.Errorf("go build RUN lacks %s (Makefile's GOTAGS): %s", want, run)
	}
	// The -X paths name real variables.
	vsrc, err := os.ReadFile(filepath.Join(repoRoot(t), "internal/version/version.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"Version", "Commit"} {
		if !regexp.MustCompile(`(?m)^var ` + v + ` = "`).Match(vsrc) {
			t.Errorf("internal/version has no string var %s to stamp", v)
		}
	}
}

// dockerignore is a .dockerignore matcher (Docker's rules: last matching pattern wins, "!" re-includes,
// "**" spans directories, a pattern matching a directory matches everything under it).
type dockerignore []struct {
	re  *regexp.Regexp
	neg bool
}

func parseDockerignore(b []byte) dockerignore {
	var d dockerignore
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		neg := strings.HasPrefix(line, "!")
		p := filepath.ToSlash(filepath.Clean(strings.TrimPrefix(line, "!")))
		p = strings.TrimPrefix(p, "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); i++ {
			switch c := p[i]; {
			case c == '*' && strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(?:.*/)?")
				i += 2
			case c == '*' && strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("(?:/.*)?$")
		d = append(d, struct {
			re  *regexp.Regexp
			neg bool
		}{regexp.MustCompile(re.String()), neg})
	}
	return d
}

func (d dockerignore) excluded(rel string) bool {
	ex := false
	for _, p := range d {
		if p.re.MatchString(rel) {
			ex = !p.neg
		}
	}
	return ex
}

func TestDockerignoreMatcher(t *testing.T) {
	d := parseDockerignore([]byte("*\n!go.mod\n!cmd/\n**/*_test.go\n!internal/\n**/testdata/\n"))
	for path, want := range map[string]bool{
		"go.mod": false, "go.sum": true, "cmd/kubelet-meta-proxy/main.go": false, "cmd/x/main_test.go": true,
		"internal/a/b.go": false, "internal/a/testdata/x.txt": true, "e2e/bed/bed.go": true, "bin/helm": true, "Makefile": true,
	} {
		if got := d.excluded(path); got != want {
			t.Errorf("excluded(%s) = %v, want %v", path, got, want)
		}
	}
}

// The Dockerfile's `go build`, run as written on the build context .dockerignore makes, builds a static,
// version-stamped binary.
func TestDockerBuildContext(t *testing.T) {
	root := repoRoot(t)
	ign, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	d := parseDockerignore(ign)
	for _, must := range []string{"go.mod", "go.sum", "internal/version/version.go"} {
		if d.excluded(must) {
			t.Errorf(".dockerignore excludes %s", must)
		}
	}
	for _, mustNot := range []string{".git/config", "bin/kustomize", "deploy/render.go", "dist/chart/Chart.yaml", "e2e/x.go", "internal/x/x_test.go"} {
		if !d.excluded(mustNot) {
			t.Errorf(".dockerignore lets in %s", mustNot)
		}
	}
	// Only once cmd/kubelet-meta-proxy builds from the full tree can the context be judged.
	cli(t)

	ctx := t.TempDir()
	n := 0
	err = filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if e.IsDir() {
			if rel == ".git" || rel == "bin" || rel == "tmp" {
				return filepath.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() || d.excluded(rel) {
			return nil
		}
		n++
		return copyFile(p, filepath.Join(ctx, rel))
	})
	if err != nil {
		t.Fatal(err)
	}
	if n > 500 {
		t.Errorf("the build context holds %d files", n)
	}

	run := goBuildRun(t, dockerfile(t))
	run = regexp.MustCompile(`--mount=\S+\s*`).ReplaceAllString(run, "")
	outDir := t.TempDir()
	run = strings.ReplaceAll(run, "/out/", outDir+"/")
	cmd := exec.Command("sh", "-c", run)
	cmd.Dir = ctx
	cmd.Env = append(os.Environ(), "VERSION=v9.9.9-dockertest", "COMMIT=c0ffee1", "TARGETOS=linux", "TARGETARCH="+goarch(t), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's go build on the .dockerignore context failed: %v\n%s\n%s", err, run, out)
	}
	bin := filepath.Join(outDir, "kubelet-meta-proxy")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: not static")
		}
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"v9.9.9-dockertest", "c0ffee1"} {
		if !bytes.Contains(b, []byte(s)) {
			t.Errorf("the binary does not carry %s: -X stamping failed", s)
		}
	}
	if bytes.Contains(b, []byte(ctx)) {
		t.Errorf("the binary contains the build path %s: -trimpath missing", ctx)
	}
}

func goarch(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// `make docker-build` passes exactly the build args the Dockerfile declares for stamping, and tags IMG.
func TestMakeDockerBuild(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	fake := filepath.Join(dir, "docker")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"$@\" >> "+dir+"/calls\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"docker-build", "docker-push"} {
		if out, err := run(root, "make", "-s", target, "IMG=example.com/kmp:v4", "CONTAINER_TOOL="+fake, "VERSION=v4.0.0", "COMMIT=abc1234"); err != nil {
			t.Fatalf("make %s: %v\n%s", target, err, out)
		}
	}
	calls, err := os.ReadFile(filepath.Join(dir, "calls"))
	if err != nil {
		t.Fatal(err)
	}
	want := "build --build-arg VERSION=v4.0.0 --build-arg COMMIT=abc1234 -t example.com/kmp:v4 .\npush example.com/kmp:v4\n"
	if string(calls) != want {
		t.Errorf("container tool calls:\n%s\nwant:\n%s", calls, want)
	}
	declared := map[string]bool{}
	for _, in := range dockerfile(t) {
		if in.cmd == "ARG" {
			name, _, _ := strings.Cut(in.args, "=")
			declared[name] = true
		}
	}
	for _, m := range regexp.MustCompile(`--build-arg (\w+)=`).FindAllStringSubmatch(string(calls), -1) {
		if !declared[m[1]] {
			t.Errorf("make docker-build passes --build-arg %s, which the Dockerfile does not declare", m[1])
		}
	}
}
