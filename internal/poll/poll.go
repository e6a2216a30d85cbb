// Package poll waits in tests for a condition that other goroutines bring about.
package poll

import (
	"testing"
	"time"
)

// Until polls cond every few milliseconds until it holds, and fails the
// test naming what it waited for if five seconds pass first.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
