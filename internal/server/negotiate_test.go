package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relay"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"
)

// TestViewNegotiatesNameEscaping: a UTF-8 metric and label name is quoted
// for a reader that asks for escaping=allow-utf-8 (Prometheus 3's Accept
// header), and escaped for one that does not, as client_golang does.
func TestViewNegotiatesNameEscaping(t *testing.T) {
	v := view.NewView()
	tgt := &scrape.Target{Key: "t/utf8", Address: "127.0.0.1:1"}
	res := relay.NewTargetCache(tgt, true).Process([]byte("{\"quoted.name\",\"dotted.label\"=\"x\"} 1\n"), "text/plain", time.Now(), time.Second, nil, nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	v.Set(res.View)
	base := start(t, Config{View: v, Gatherer: prometheus.NewRegistry(), Ready: func() error { return nil }})
	for _, tc := range []struct {
		accept, contentType, line string
	}{
		{"text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
			"text/plain; version=1.0.0; charset=utf-8; escaping=allow-utf-8", `{"quoted.name","dotted.label"="x"} 1`},
		{"text/plain;version=0.0.4;q=1,*/*;q=0.1", "text/plain; version=0.0.4; charset=utf-8; escaping=underscores", `quoted_name{dotted_label="x"} 1`},
		{"text/plain;version=1.0.0;escaping=dots", "text/plain; version=1.0.0; charset=utf-8; escaping=dots", `quoted_dot_name{dotted_dot_label="x"} 1`},
		{"", "text/plain; version=0.0.4; charset=utf-8; escaping=underscores", `quoted_name{dotted_label="x"} 1`},
	} {
		resp, body := get(t, base+"/metrics", "Accept", tc.accept)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tc.contentType {
			t.Errorf("Accept %q: %d, Content-Type %q, want %q", tc.accept, resp.StatusCode, resp.Header.Get("Content-Type"), tc.contentType)
		}
		if !strings.Contains(body, tc.line+"\n") {
			t.Errorf("Accept %q: no line %q in\n%s", tc.accept, tc.line, body)
		}
	}
}
