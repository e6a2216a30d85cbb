package remotewrite

import (
	"math/rand"
	"syscall"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// BenchmarkTenantEpochs is the remote-write CPU per sample with tenant
// routing off and on as the loadbench sees it (make bench's 50x30 profile):
// 50 nodes whose pods are in 200 namespaces of 20 teams with loadbench's
// Zipf(1.1) spread (the biggest namespace holds about a fifth of the pods),
// scraped in a 15s round whose scrapes spread over three 5s batch deadlines.
// After each third of the nodes is appended, everything queued is sent as
// the deadline would send it (full batches, then the rest), minus HTTP. So a
// tenant's requests hold what it got in one deadline, from many nodes, as
// in the relay; BenchmarkTenantPipeline instead sends once per round.
func BenchmarkTenantEpochs(b *testing.B) {
	const nodes, epochs = 50, 3
	r := rand.New(rand.NewSource(1))
	zipf := rand.NewZipf(r, 1.1, 1, benchNamespaces-1)
	scrapes := teamTargetsOf(b, nodes, func() int { return int(zipf.Uint64()) })
	total := totalOf(scrapes)
	for _, c := range []struct {
		name   string
		tenant TenantConfig
	}{
		{"off", TenantConfig{}},
		{"on", TenantConfig{Label: "team", Default: "platform"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			w := benchTenantWriter(b, c.tenant, 0)
			var requests, wire int
			var enc encoder
			var buf []model.Sample
			flush := func() {
				r, n := encodeQueued(w, &enc, &buf)
				requests += r
				wire += n
			}
			round := func(ts int64) {
				for e := range epochs {
					for i := e; i < len(scrapes); i += epochs {
						s := scrapes[i]
						for j := range s {
							s[j].T = ts
						}
						w.Append(s)
					}
					flush()
				}
			}
			round(1) // first scrape: the caches fill, rings grow
			requests, wire = 0, 0
			ts := int64(2)
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				round(ts)
				ts += 15000
			}
			cpu := processCPU() - cpu0
			n := b.N * total
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/sample")
			// CPU time (the process's, GC included) rather than wall time: on
			// a shared machine the wall time mostly measures the neighbours.
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/sample")
			b.ReportMetric(float64(wire)/float64(n), "wire-B/sample")
			b.ReportMetric(float64(requests)/float64(b.N), "requests/round")
			b.ReportMetric(float64(total), "samples/round")
		})
	}
}

// processCPU is the user+system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
