package scrape

import (
	"strings"
	"testing"
)

func labelString(t *Target) string {
	var kv []string
	for _, l := range t.Labels {
		kv = append(kv, l.Name+"="+l.Value)
	}
	return strings.Join(kv, ",")
}

func TestPlainTargetsStayDistinct(t *testing.T) {
	for _, tc := range []struct {
		name string
		urls []string
		want []string // each target's labels
		err  string
	}{
		{"one per host", []string{"http://a:8080/metrics", "http://b:8080/metrics"},
			[]string{"instance=a:8080,job=j", "instance=b:8080,job=j"}, ""},
		{"identical URLs are one target", []string{"http://a:8080/metrics", "http://a:8080/metrics"},
			[]string{"instance=a:8080,job=j"}, ""},
		{"paths on one host:port kept apart", []string{"http://a:8080/metrics", "http://a:8080/federate", "http://b/x"},
			[]string{"instance=a:8080,job=j,metrics_path=/metrics", "instance=a:8080,job=j,metrics_path=/federate", "instance=b:80,job=j"}, ""},
		{"default port counts", []string{"http://a/metrics", "http://a:80/other"},
			[]string{"instance=a:80,job=j,metrics_path=/metrics", "instance=a:80,job=j,metrics_path=/other"}, ""},
		{"no path is /", []string{"http://a:1", "http://a:1/m"},
			[]string{"instance=a:1,job=j,metrics_path=/", "instance=a:1,job=j,metrics_path=/m"}, ""},
		{"only the query differs", []string{"http://a:1/m?x=1", "http://a:1/m?x=2"}, nil, "same host:port and path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PlainTargets(tc.urls, "j", "")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "x=2") {
					t.Fatalf("err %v, want %q naming the URLs", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d targets, want %d", len(got), len(tc.want))
			}
			keys := map[string]bool{}
			for i, tg := range got {
				if s := labelString(tg); s != tc.want[i] {
					t.Errorf("target %d: %s, want %s", i, s, tc.want[i])
				}
				keys[tg.Key] = true
			}
			if len(keys) != len(got) {
				t.Errorf("keys not distinct")
			}
		})
	}
}
