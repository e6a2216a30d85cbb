package captures

import (
	"bytes"
	"strings"
	"testing"
)

// Every named capture loads, by short name and by file name, and is a text exposition;
// an unknown name is an error naming it.
func TestRead(t *testing.T) {
	for _, m := range []map[string]string{Files, Generated} {
		for short, file := range m {
			a, err := Read(short)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Read(file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) || len(a) == 0 || !bytes.HasPrefix(a, []byte("# HELP ")) {
				t.Fatalf("%s (%s): %d bytes, starts %q", short, file, len(a), a[:min(len(a), 20)])
			}
		}
	}
	if _, err := Read("no-such"); err == nil || !strings.Contains(err.Error(), "no-such") {
		t.Fatalf("unknown capture: %v", err)
	}
}
