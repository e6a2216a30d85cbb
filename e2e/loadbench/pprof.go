package loadbench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// PprofEnv names the variable that makes the profiling build of the relay serve
// net/http/pprof on that address.
const PprofEnv = "KMP_LOADBENCH_PPROF"

// pprofSource is added to package main of the relay with go build -overlay, so profiling
// needs no change to cmd/.
const pprofSource = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("` + PprofEnv + `"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
`

// BuildPprofRelay builds the relay with net/http/pprof (on $KMP_LOADBENCH_PPROF) into out,
// from the same sources as make build plus one overlaid file.
func BuildPprofRelay(ctx context.Context, root, out string, log io.Writer) error {
	dir, err := os.MkdirTemp("", "loadbench-pprof-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "pprof.go")
	if err := os.WriteFile(src, []byte(pprofSource), 0o644); err != nil {
		return err
	}
	ov, _ := json.Marshal(map[string]map[string]string{"Replace": {
		filepath.Join(root, "cmd", "kubelet-meta-proxy", "zz_loadbench_pprof.go"): src,
	}})
	ovFile := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(ovFile, ov, 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", "grpcnotrace", "-overlay", ovFile, "-o", out, "./cmd/kubelet-meta-proxy")
	cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if log != nil {
		cmd.Stdout, cmd.Stderr = log, log
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build the pprof relay: %w", err)
	}
	return nil
}

// fetchProfile saves http://addr/debug/pprof/<what> to file.
func fetchProfile(ctx context.Context, addr, what, file string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/"+what, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof %s: %s", what, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
