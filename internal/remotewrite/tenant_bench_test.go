package remotewrite

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/captures"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

const (
	benchTargets    = 10
	benchNamespaces = 200
	benchTeams      = 20
)

// teamTargets is benchTargets nodes of the 1.35 capture whose pods are spread
// over 200 namespaces of 20 teams (namespace i belongs to team i%20), each
// series with its team label, interned as the relay does. It returns one
// scrape's samples per target.
func teamTargets(tb testing.TB) [][]model.Sample { return teamTargetsOf(tb, benchTargets, nil) }

// teamTargetsOf is teamTargets for nodes nodes; nsRank, if not nil, picks a
// new pod's namespace (else they are spread evenly).
func teamTargetsOf(tb testing.TB, nodes int, nsRank func() int) [][]model.Sample {
	tb.Helper()
	b, err := captures.Read("1_35")
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]model.Sample
	for i := range nodes {
		node := fmt.Sprintf("ip-10-0-0-%d.eu-west-1.compute.internal", i)
		fx := parseExposition(tb, b, newTarget(0), map[string]string{
			"job": "kubelet", "instance": node + ":10250", "node": node, "metrics_path": "/metrics/cadvisor",
		}, 0)
		tg := newTarget(uint64(i))
		nsOf := map[string]int{} // pod -> namespace number
		samples := make([]model.Sample, 0, len(fx))
		for _, f := range fx {
			bld := labels.NewBuilder(f.labels)
			// By pod: the capture's few namespaces per node become 200
			// over the nodes.
			if pod := f.labels.Get("pod"); pod != "" {
				k, ok := nsOf[pod]
				if !ok {
					k = (i*7 + len(nsOf)*13) % benchNamespaces
					if nsRank != nil {
						k = nsRank()
					}
					nsOf[pod] = k
				}
				bld.Set("namespace", fmt.Sprintf("ns-%03d", k))
				bld.Set("team", fmt.Sprintf("team-%02d", k%benchTeams))
			}
			samples = append(samples, tg.seriesOf(bld.Labels()).at(f.t, f.v))
		}
		// One table per scrape, as the relay hands over (a later snapshot
		// of a lineage holds every earlier reference).
		final := tg.in.Table()
		for j := range samples {
			samples[j].Table = final
		}
		out = append(out, samples)
	}
	return out
}

// BenchmarkTenantPipeline is the remote-write CPU per sample with tenant
// routing off (queue: shards by target) and on (tenantQueue: per-tenant
// FIFOs, tenant cached per run), 10 nodes whose pods are in 200 namespaces of
// 20 teams: Append every target's scrape, then send everything as the
// workers would, minus HTTP (encode every batch). Requests and wire bytes per
// sample are reported: routing makes more, smaller requests.
func BenchmarkTenantPipeline(b *testing.B) {
	scrapes := teamTargets(b)
	total := 0
	for _, s := range scrapes {
		total += len(s)
	}
	for _, c := range []struct {
		name   string
		tenant TenantConfig
	}{
		{"off", TenantConfig{}},
		{"on", TenantConfig{Label: "team", Default: "platform"}},
		{"on-remove-label", TenantConfig{Label: "team", Default: "platform", RemoveLabel: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			w := benchTenantWriter(b, c.tenant, 0)
			var requests, wire int
			var enc encoder
			var buf []model.Sample
			round := func(ts int64) {
				for _, s := range scrapes {
					for i := range s {
						s[i].T = ts
					}
					w.Append(s)
				}
				r, n := encodeQueued(w, &enc, &buf)
				requests += r
				wire += n
			}
			round(1) // first scrape: the caches fill, rings grow
			requests, wire = 0, 0
			ts := int64(2)
			b.ReportAllocs()
			for b.Loop() {
				round(ts)
				ts += 15000
			}
			n := b.N * total
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/sample")
			b.ReportMetric(float64(wire)/float64(n), "wire-B/sample")
			b.ReportMetric(float64(requests)/float64(b.N), "requests/round")
		})
	}
}

// BenchmarkTenantAppend is Append alone, off and on: the routing's cost on
// the caller (the scrape loop).
func BenchmarkTenantAppend(b *testing.B) {
	scrapes := teamTargets(b)
	for _, c := range []struct {
		name   string
		tenant TenantConfig
	}{{"off", TenantConfig{}}, {"on", TenantConfig{Label: "team", Default: "platform"}}} {
		b.Run(c.name, func(b *testing.B) {
			w := benchTenantWriter(b, c.tenant, 100_000_000) // never full: no drops in the measure
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				for _, s := range scrapes {
					w.Append(s)
					n += len(s)
				}
				if n > 2_000_000 { // keep the rings' memory bounded
					b.StopTimer()
					for _, q := range w.queues {
						for _, s := range q.shards {
							s.ring.reset()
						}
					}
					for _, q := range w.tenantQueues {
						for _, t := range q.tenants {
							if t != nil {
								t.ring.reset()
							}
						}
						q.buffered = 0
					}
					n = 0
					b.StartTimer()
				}
			}
			reportPerSample(b, totalOf(scrapes), 0)
		})
	}
}

func totalOf(s [][]model.Sample) int {
	n := 0
	for _, x := range s {
		n += len(x)
	}
	return n
}

// encodeQueued encodes, as the senders would, everything queued in w's shards and tenant
// rings, and returns the number of requests and their wire bytes.
func encodeQueued(w *Writer, enc *encoder, buf *[]model.Sample) (requests, wire int) {
	for _, q := range w.queues {
		for _, s := range q.shards {
			for s.take(false) > 0 {
				body, _, _ := s.enc.encode(s.batch)
				requests++
				wire += len(body)
				s.inflight = 0
				clear(s.batch)
				s.batch = s.batch[:0]
			}
		}
	}
	for _, q := range w.tenantQueues {
		if cap(*buf) < q.cfg.MaxSamplesPerSend {
			*buf = make([]model.Sample, q.cfg.MaxSamplesPerSend)
		}
		for _, t := range q.tenants {
			for t != nil && t.ring.n > 0 {
				k := t.ring.pop((*buf)[:q.cfg.MaxSamplesPerSend])
				q.buffered -= k
				body, _, _ := enc.encode((*buf)[:k])
				requests++
				wire += len(body)
			}
		}
	}
	return requests, wire
}

// benchTenantWriter is a Writer with one endpoint (default queue, capacity if > 0) and
// the given tenant routing, never started: benchmarks drive its queues themselves.
func benchTenantWriter(b *testing.B, tenant TenantConfig, capacity int) *Writer {
	b.Helper()
	ep := testEndpoint("http://127.0.0.1:1/push")
	ep.Queue = DefaultQueueConfig()
	if capacity > 0 {
		ep.Queue.Capacity = capacity
	}
	ep.Tenant = tenant
	w, err := New(Config{Endpoints: []EndpointConfig{ep}, ShutdownTimeout: time.Second}, testLogger(), nil)
	if err != nil {
		b.Fatal(err)
	}
	return w
}
