package remotewrite

import (
	"math/rand/v2"
	"testing"
)

// TestEncodeScrapeStream runs the encoder the way a shard does: whole
// scrapes of several targets (more than the encoder keeps states for) pushed
// one after another, values and timestamps moving on between scrapes as
// cAdvisor's do (some stay), cut into requests of up to 10000 samples that
// start anywhere in a scrape, one encoder for all of them.
func TestEncodeScrapeStream(t *testing.T) {
	_, fx := captureTargets(t, 7, 0)
	rng := rand.New(rand.NewPCG(11, 12))
	var e encoder
	var stream []Sample
	round := make([]int64, len(fx))
	for len(stream) < 400_000 {
		tg := rng.IntN(len(fx))
		round[tg]++
		for _, f := range fx[tg] {
			ts, v := f.t+round[tg]*15000, f.v
			switch rng.IntN(4) {
			case 0: // same as the last scrape's
				ts, v = f.t+(round[tg]-1)*15000, f.v
			case 1:
				v += float64(rng.IntN(1000))
			case 2:
				ts = 0
			}
			stream = append(stream, f.series.at(ts, v))
		}
	}
	for len(stream) > 0 {
		n := min(len(stream), 1+rng.IntN(10000))
		checkEncode(t, &e, stream[:n])
		stream = stream[n:]
	}
}

// TestEncodeManyTablesPerRequest: short scrapes of many targets, so one
// request holds more table lineages than the encoder keeps states for and
// comes back to evicted ones.
func TestEncodeManyTablesPerRequest(t *testing.T) {
	_, fx := captureTargets(t, 11, 400)
	rng := rand.New(rand.NewPCG(21, 22))
	var e encoder
	for range 40 {
		var batch []Sample
		for len(batch) < 10000 {
			tg := rng.IntN(len(fx))
			start := rng.IntN(len(fx[tg]))
			end := min(len(fx[tg]), start+1+rng.IntN(300))
			for _, f := range fx[tg][start:end] {
				batch = append(batch, f.series.at(f.t+int64(rng.IntN(2)), f.v+float64(rng.IntN(2))))
			}
		}
		checkEncode(t, &e, batch)
	}
}
