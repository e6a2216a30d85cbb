package remotewrite

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

func TestDescribeBatch(t *testing.T) {
	var batch []model.Sample
	for i := range 8 {
		s := newSeries("__name__", "m", "instance", fmt.Sprintf("10.0.0.%d:10250", i%7), "job", "kubelet", "v", strings.Repeat("x", 400))
		batch = append(batch, s.at(1, 1))
	}
	targets, first := describeBatch(batch)
	if want := "kubelet/10.0.0.0:10250, kubelet/10.0.0.1:10250, kubelet/10.0.0.2:10250, kubelet/10.0.0.3:10250, kubelet/10.0.0.4:10250, and 2 more"; targets != want {
		t.Errorf("targets %q, want %q", targets, want)
	}
	if !strings.HasPrefix(first, `{__name__="m", instance="10.0.0.0:10250", job="kubelet", v="xxx`) || len(first) > maxSeriesShown+10 {
		t.Errorf("first series %q", first)
	}
	if a, b := describeBatch(nil); a != "" || b != "" {
		t.Errorf("empty batch: %q %q", a, b)
	}
}

// A 4xx is logged with the receiver's message, the batch's targets and its
// first series.
func Test4xxLogNamesTargetsAndSeries(t *testing.T) {
	rcv := newReceiver(t, func(int) response {
		return response{status: http.StatusBadRequest, body: "out of bounds"}
	})
	ep := testEndpoint(rcv.url())
	ep.Queue.Shards = 1
	h := start(t, Config{Endpoints: []EndpointConfig{ep}}, nil)
	s := newSeries("__name__", "skewed", "instance", "10.1.2.3:10250", "job", "kubelet")
	h.w.Append(sequence(s, 10, 3))
	eventually(t, 3*time.Second, "the rejection logged", func() bool { return h.logs.count("rejected a batch") == 1 })
	h.logs.mu.Lock()
	defer h.logs.mu.Unlock()
	for _, r := range h.logs.records {
		if !strings.Contains(r.Message, "rejected a batch") {
			continue
		}
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
		if !strings.Contains(attrs["err"], "out of bounds") || attrs["targets"] != "kubelet/10.1.2.3:10250" ||
			attrs["first_series"] != `{__name__="skewed", instance="10.1.2.3:10250", job="kubelet"}` {
			t.Errorf("log attributes %v", attrs)
		}
	}
}
