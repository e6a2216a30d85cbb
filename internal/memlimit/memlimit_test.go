package memlimit

import (
	"testing"
	"testing/fstest"
)

func TestLimit(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for _, tc := range []struct {
		name  string
		fs    fstest.MapFS
		want  int64
		found bool
		err   bool
	}{
		{name: "no /proc", fs: fstest.MapFS{}},
		{name: "v2 in a cgroup namespace (a container)", fs: fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("536870912\n"),
		}, want: 512 << 20, found: true},
		{name: "v2 without a limit", fs: fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("max\n"),
		}},
		{name: "v2 on a host: the pod's limit is below the container's", fs: fstest.MapFS{
			"proc/self/cgroup": file("0::/kubepods.slice/pod1/cri-abc\n"),
			"sys/fs/cgroup/kubepods.slice/pod1/cri-abc/memory.max": file("1073741824\n"),
			"sys/fs/cgroup/kubepods.slice/pod1/memory.max":         file("805306368\n"),
			"sys/fs/cgroup/kubepods.slice/memory.max":              file("max\n"),
		}, want: 768 << 20, found: true},
		{name: "v1 bind-mounted container cgroup (hybrid, as this CI machine)", fs: fstest.MapFS{
			"proc/self/cgroup":                           file("9:name=systemd:/\n4:memory:/docker/abc\n1:cpu,cpuacct:/\n0::/\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("268435456\n"),
		}, want: 256 << 20, found: true},
		{name: "v1 without a limit", fs: fstest.MapFS{
			"proc/self/cgroup": file("4:memory:/process_api/x\n"),
			"sys/fs/cgroup/memory/process_api/x/memory.limit_in_bytes": file("9223372036854771712\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes":               file("9223372036854771712\n"),
		}},
		{name: "v1 controller listed with others", fs: fstest.MapFS{
			"proc/self/cgroup": file("3:cpu,memory:/a\n"),
			"sys/fs/cgroup/memory/a/memory.limit_in_bytes": file("1000000\n"),
		}, want: 1000000, found: true},
		{name: "garbage in a limit file", fs: fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("lots\n"),
		}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, found, err := Limit(tc.fs)
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if got != tc.want || found != tc.found {
				t.Fatalf("Limit = %d, %v; want %d, %v", got, found, tc.want, tc.found)
			}
		})
	}
}

// On the machine the tests run on: whatever it finds must be sane.
func TestLimitOnThisMachine(t *testing.T) {
	n, found, err := Limit(OS())
	if err != nil {
		t.Fatal(err)
	}
	if found && n <= 0 {
		t.Fatalf("limit %d", n)
	}
	t.Logf("limit %d (found %v)", n, found)
}
