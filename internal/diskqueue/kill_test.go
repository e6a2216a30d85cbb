package diskqueue

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// TestKill9 runs a real appender process, kills it with SIGKILL in the
// middle of appending, and reopens its directory: every record whose Append
// returned is there, in order, and nothing else is lost (at most the one
// being written is torn and counted).
func TestKill9(t *testing.T) {
	if dir := os.Getenv("DISKQUEUE_KILL_CHILD"); dir != "" {
		killChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$", "-test.count=1")
	cmd.Env = append(os.Environ(), "DISKQUEUE_KILL_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	last := -1
	deadline := time.Now().Add(20 * time.Second)
	for sc.Scan() && last < 2000 && time.Now().Before(deadline) {
		if n, err := strconv.Atoi(sc.Text()); err == nil {
			last = n
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if last < 0 {
		t.Fatal("child appended nothing")
	}
	q := openQueue(t, smallOpts(dir))
	defer q.Close()
	total, _ := q.Len()
	for i := range int(total) {
		r := next(t, q)
		checkRec(t, r, i, 10+i%3000)
		q.Ack(r)
	}
	empty(t, q)
	if int(total) < last+1 {
		t.Fatalf("%d records after kill -9, but Append had returned for %d", total, last+1)
	}
	if torn := q.counter("dropped_records_total", reasonTorn); torn > 1 {
		t.Fatalf("%v torn records, at most the one being written", torn)
	}
	t.Logf("killed after %d acknowledged appends; %d records recovered, torn %v", last+1, total, q.counter("dropped_records_total", reasonTorn))
}

// killChild appends numbered records and prints each number once Append
// returned, until killed (or a bound, so that it never runs away).
func killChild(dir string) {
	o := smallOpts(dir)
	o.MaxBytes = 64 << 20 // nothing dropped for room
	q, err := Open(o, nil, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := range 1_000_000 {
		h, p := rec(i, 10+i%3000)
		if err := q.Append(h, p); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(i)
	}
	os.Exit(0)
}
