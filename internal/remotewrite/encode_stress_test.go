package remotewrite

import (
	"math/rand/v2"
	"testing"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
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
	var stream []model.Sample
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
		var batch []model.Sample
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

// TestEncodeStateTakeoverForgetsTheOldLayout: an encoder state taken over
// by another table lineage must not read the old lineage's words as its
// own. The old one's run words hold sample bits after the stamp; a new
// run whose stamp word falls on a timestamp's high word (410 for every
// millisecond timestamp of 2026) would otherwise look written, and be
// copied from a bogus position (found by the 500-node load benchmark:
// "snappy: corrupt input", a copy offset near 2^32).
func TestEncodeStateTakeoverForgetsTheOldLayout(t *testing.T) {
	const hi = 7 // the high word of A's timestamps, and the gen B will be stamped with
	a := newTarget(1)
	// A's first run starts at rests word 0: [6, len, s1..s6]; its state
	// words are rs[0] position, rs[1] stamp, rs[2:6] the sample after it:
	// rs[3] is the timestamp's high word.
	sa := a.series(pairs("__name__", "m", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", "6")...)
	var e encoder
	checkEncode(t, &e, []model.Sample{sa.at(hi<<32|5, 1), sa.at(hi<<32|6, 1)})
	// Three other tables make A's state the least recently used.
	var others []model.Sample
	for k := range 3 {
		o := newTarget(uint64(10 + k))
		others = append(others, o.series(pairs("__name__", "o")...).at(1, 1))
	}
	checkEncode(t, &e, others)
	// B: an empty run at word 0, then a run at word 2, whose stamp word
	// (3) is where A kept its timestamp's high word.
	b := newTarget(2)
	b0 := b.series(pairs("__name__", "x")...)
	b1 := b.series(pairs("__name__", "y", "g", "7", "h", "8", "i", "9", "j", "10")...)
	for i := range e.states {
		if e.states[i].id == sa.Table.ID {
			e.states[i].gen = hi - 2 // encode bumps it, the takeover once more
		}
	}
	checkEncode(t, &e, []model.Sample{b0.at(1, 1), b1.at(2, 2), b1.at(3, 3)})
}
