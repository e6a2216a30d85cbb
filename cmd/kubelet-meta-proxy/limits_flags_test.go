package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relay"
)

func TestLimitFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want relay.Limits
		err  []string
	}{
		{nil, relay.Limits{OutOfBoundsFuture: 10 * time.Minute, OutOfBoundsPast: time.Hour}, nil},
		{[]string{"--sample-limit=50000", "--label-limit=30", "--label-name-length-limit=128", "--label-value-length-limit=2048", "--out-of-bounds-future=0", "--out-of-bounds-past=2h"},
			relay.Limits{SampleLimit: 50000, LabelLimit: 30, LabelNameLengthLimit: 128, LabelValueLengthLimit: 2048, OutOfBoundsPast: 2 * time.Hour}, nil},
		{[]string{"--sample-limit=-1", "--label-value-length-limit=-5"}, relay.Limits{}, []string{"--sample-limit=-1", "--label-value-length-limit=-5"}},
		{[]string{"--out-of-bounds-future=-1m"}, relay.Limits{}, []string{"--out-of-bounds-future=-1m0s"}},
	} {
		var o limitsOptions
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := o.Validate()
		if tc.err != nil {
			for _, w := range tc.err {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("%q: error %v, want it to name %s", tc.args, err, w)
				}
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if got := o.Config(); got != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.args, got, tc.want)
		}
	}
}

// The scrape timeout defaults to min(10s, interval), as Prometheus's.
func TestScrapeTimeoutDefault(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{nil, 10 * time.Second},
		{[]string{"--scrape-interval=5s"}, 5 * time.Second},
		{[]string{"--scrape-interval=1m"}, 10 * time.Second},
		{[]string{"--scrape-interval=1m", "--scrape-timeout=20s"}, 20 * time.Second},
	} {
		var o scrapeOptions
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if err := o.Validate(); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if o.Timeout != tc.want {
			t.Errorf("%q: timeout %s, want %s", tc.args, o.Timeout, tc.want)
		}
	}
}
