package relay

import (
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
)

// notOnNodeLogEvery is how often, at most, the relay logs a node's series
// that name pods the apiserver places elsewhere.
const notOnNodeLogEvery = time.Minute

// podCheckMetrics counts and logs, per node, the samples the pod-on-node
// check caught.
type podCheckMetrics struct {
	action  string
	samples *prometheus.CounterVec
	logger  *slog.Logger

	mu     sync.Mutex
	logged map[string]time.Time // node -> last log
}

func newPodCheckMetrics(cfg PodConfig, logger *slog.Logger, reg prometheus.Registerer) *podCheckMetrics {
	if cfg.Source == nil || cfg.Check == NodeCheckOff {
		return nil
	}
	m := &podCheckMetrics{
		action: cfg.Check.String(),
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelet_meta_proxy_pod_not_on_node_samples_total",
			Help: "Samples of a kubelet's series naming a pod the apiserver does not place on that node, by node and action (plain: sent without namespace or pod labels; drop: not sent).",
		}, []string{"node", "action"}),
		logger: logger,
		logged: map[string]time.Time{},
	}
	if reg != nil {
		reg.MustRegister(m.samples)
	}
	return m
}

func (m *podCheckMetrics) observe(t *scrape.Target, res *Result) {
	if m == nil || t.Node == "" {
		return
	}
	if res.NotOnNode == 0 {
		return
	}
	m.samples.WithLabelValues(t.Node, m.action).Add(float64(res.NotOnNode))
	now := time.Now()
	m.mu.Lock()
	last, ok := m.logged[t.Node]
	due := !ok || now.Sub(last) >= notOnNodeLogEvery
	if due {
		m.logged[t.Node] = now
	}
	m.mu.Unlock()
	if due {
		m.logger.Warn("kubelet reports series of pods the apiserver does not place on its node",
			"node", t.Node, "action", m.action, "samples", res.NotOnNode, "first_pod", res.FirstNotOnNode,
			"next_log_in", notOnNodeLogEvery)
	}
}

func (m *podCheckMetrics) forget(t *scrape.Target) {
	if m == nil || t.Node == "" {
		return
	}
	m.samples.DeletePartialMatch(prometheus.Labels{"node": t.Node})
	m.mu.Lock()
	delete(m.logged, t.Node)
	m.mu.Unlock()
}
