package scrape

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

func TestParseDigitsAgainstStrconv(t *testing.T) {
	cases := []string{"0", "7", "12345678", "123456789", "1700000000123", "999999999999999999", "00000000000001",
		"1234567a", "12345678a", "a2345678", "1700000000:23", "17000000/0123", "", " 1", "1 ", "-1", "+1", "1e3",
		"1234567890123456789", "99999999999999999999"}
	for range 2000 {
		n := rand.Int64N(1 << 62)
		cases = append(cases, strconv.FormatInt(n, 10))
	}
	for _, c := range cases {
		got, ok := parseDigits([]byte(c))
		want, err := strconv.ParseInt(c, 10, 64)
		wantOK := err == nil && c != "" && c[0] >= '0' && c[0] <= '9'
		if ok != wantOK || (ok && got != want) {
			t.Errorf("parseDigits(%q) = %d, %v; want %d, %v", c, got, ok, want, wantOK)
		}
	}
	// Every byte value in every position of an 8-digit field.
	for pos := range 8 {
		for c := range 256 {
			b := []byte("12345678")
			b[pos] = byte(c)
			_, ok := parseDigits(b)
			if ok != (c >= '0' && c <= '9') {
				t.Fatalf("parseDigits(%q) ok = %v", b, ok)
			}
		}
	}
}

func BenchmarkParseDigits(b *testing.B) {
	ts := []byte("1700000000123")
	for b.Loop() {
		if _, ok := parseDigits(ts); !ok {
			b.Fatal("not digits")
		}
	}
}
