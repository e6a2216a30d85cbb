// Package memlimit finds the memory limit of the cgroup the process runs in,
// so that the Go runtime's soft limit (GOMEMLIMIT) can be set below it: near
// the limit the garbage collector then runs harder and returns freed memory
// to the system sooner, instead of the container being killed for memory it
// did not need. Go sets GOMAXPROCS from the cgroup's CPU limit by itself,
// but not the memory limit. GCTuner bounds the heap's growth between
// collections in bytes as well (gctuner.go).
package memlimit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"strconv"
	"strings"
)

// FS is where the cgroup files are read from: os.DirFS("/") in production,
// a fixture in tests.
type FS = fs.FS

// Limit returns the smallest memory limit set on the process's cgroup or
// one of its ancestors that fsys shows, and false if there is none (no
// cgroup, no limit, or "max"). Both cgroup v2 (memory.max) and v1
// (memory/memory.limit_in_bytes) are read; in a container the cgroup is
// usually its own root (a cgroup namespace, or v1's bind mount), which this
// finds too.
func Limit(fsys FS) (int64, bool, error) {
	self, err := fs.ReadFile(fsys, "proc/self/cgroup")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, false, nil
		}
		return 0, false, err
	}
	var v1, v2 string
	sc := bufio.NewScanner(bytes.NewReader(self))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = parts[2]
		case hasController(parts[1], "memory"):
			v1 = parts[2]
		}
	}
	best, found := int64(math.MaxInt64), false
	try := func(dir, file string, cgroupPath string) error {
		for p := path.Clean("/" + cgroupPath); ; p = path.Dir(p) {
			n, ok, err := readLimit(fsys, path.Join(dir, p, file))
			if err != nil {
				return err
			}
			if ok && n < best {
				best, found = n, true
			}
			if p == "/" {
				return nil
			}
		}
	}
	if v1 != "" {
		if err := try("sys/fs/cgroup/memory", "memory.limit_in_bytes", v1); err != nil {
			return 0, false, err
		}
	}
	if v2 != "" {
		if err := try("sys/fs/cgroup", "memory.max", v2); err != nil {
			return 0, false, err
		}
	}
	if !found {
		return 0, false, nil
	}
	return best, true, nil
}

func hasController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// noLimitV1 is at or above what cgroup v1 reports for "no limit"
// (PAGE_COUNTER_MAX pages, rounded: 9223372036854771712 with 4 KiB pages).
const noLimitV1 = math.MaxInt64 / 2

// readLimit reads one limit file; a missing file is no limit.
func readLimit(fsys FS, name string) (int64, bool, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return 0, false, nil
		}
		return 0, false, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %q is not a number of bytes", name, s)
	}
	if n <= 0 || n >= noLimitV1 {
		return 0, false, nil
	}
	return n, true, nil
}

// OS is the root file system, for Limit.
func OS() FS { return os.DirFS("/") }
