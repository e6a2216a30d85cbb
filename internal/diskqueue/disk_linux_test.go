//go:build linux

package diskqueue

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// mountTmpfs mounts a small tmpfs on a new directory; the test is skipped
// when not root or when mounting is not allowed (a container without
// CAP_SYS_ADMIN).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestDiskFull fills a 1 MiB tmpfs: Append fails with ErrUnavailable
// (counted, reason enospc) without leaving a partial record, reading what
// was written works, and once acknowledged segments are deleted the queue
// is writable again.
func TestDiskFull(t *testing.T) {
	dir := filepath.Join(mountTmpfs(t, "1m"), "q")
	o := Options{Dir: dir, MaxBytes: 64 << 20, SegmentBytes: 256 << 10, MaxRecordBytes: 100 << 10, SyncInterval: 10 * time.Millisecond, RetryInterval: 50 * time.Millisecond}
	q := openQueue(t, o)
	defer q.Close()
	const size = 40 << 10
	n := 0
	var err error
	for ; n < 100; n++ {
		h, p := rec(n, size)
		if err = q.Append(h, p); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("after %d appends: %v, want ErrUnavailable wrapping ENOSPC", n, err)
	}
	if n < 10 {
		t.Fatalf("only %d records fit in 1 MiB", n)
	}
	t.Logf("disk full after %d records: %v", n, err)
	if got := q.counter("append_errors_total", "enospc"); got != 1 {
		t.Fatalf("enospc errors %v, want 1", got)
	}
	// Until RetryInterval has passed, appends fail fast.
	if err := q.Append(rec(1000, 10)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Append right after the failure: %v", err)
	}
	for i := range n {
		r := next(t, q)
		checkRec(t, r, i, size)
		q.Ack(r)
	}
	empty(t, q)
	if got := q.counter("dropped_records_total", reasonTorn) + q.counter("dropped_records_total", reasonCorrupt); got != 0 {
		t.Fatalf("%v records skipped: the failed append left a partial record", got)
	}
	time.Sleep(o.RetryInterval)
	appendN(t, q, 2000, 2005, size)
	for i := 2000; i < 2005; i++ {
		r := next(t, q)
		checkRec(t, r, i, size)
		q.Ack(r)
	}
}

// TestReadOnly opens a queue on a read-only bind mount of a directory
// holding a queue: Open fails with ErrUnavailable, so the caller keeps its
// memory queue; the data stays for when the volume is writable again.
func TestReadOnly(t *testing.T) {
	rw := mountTmpfs(t, "4m")
	q := openQueue(t, smallOpts(rw))
	appendN(t, q, 0, 3, 100)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	ro := t.TempDir()
	if err := syscall.Mount(rw, ro, "", syscall.MS_BIND, ""); err != nil {
		t.Skipf("bind mount: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(ro, syscall.MNT_DETACH) })
	if err := syscall.Mount("", ro, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Skipf("remount read-only: %v", err)
	}
	_, err := Open(smallOpts(ro), nil, nil)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, syscall.EROFS) {
		t.Fatalf("Open on a read-only volume: %v, want ErrUnavailable wrapping EROFS", err)
	}
	q = openQueue(t, smallOpts(rw))
	defer q.Close()
	for i := range 3 {
		checkRec(t, next(t, q), i, 100)
	}
}
