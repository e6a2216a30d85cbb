package scrape

import (
	"math/rand/v2"
	"testing"
)

// plainValueSlow is plainValue one byte at a time.
func plainValueSlow(v []byte) bool {
	for _, c := range v {
		if c < 0x20 || c > 0x7e || c == '\\' {
			return false
		}
	}
	return true
}

// TestPlainValue puts every byte value at every position of values of
// every length up to 24 (so in and after the eight-byte words), among
// printable neighbours and random ones.
func TestPlainValue(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 24; n++ {
		for pos := range n {
			for c := range 256 {
				v := make([]byte, n)
				for i := range v {
					v[i] = byte('a' + i%26)
				}
				v[pos] = byte(c)
				if got, want := plainValue(v), plainValueSlow(v); got != want {
					t.Fatalf("plainValue(%q) = %v, want %v", v, got, want)
				}
				for i := range v {
					if i != pos {
						v[i] = byte(r.IntN(256))
					}
				}
				if got, want := plainValue(v), plainValueSlow(v); got != want {
					t.Fatalf("plainValue(%q) = %v, want %v", v, got, want)
				}
			}
		}
	}
}
