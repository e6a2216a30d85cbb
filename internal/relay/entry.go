package relay

import "math"

// rawLen is a raw series' length in a cache entry, saturated at 16 bits: the
// length only guards the 64-bit hash against collisions and tells the text
// scanner where a predicted series' labels end, and series of 64 KiB and
// more are rare enough to go without either shortcut.
type rawLen uint16

func rawLenOf(n int) rawLen { return rawLen(min(n, math.MaxUint16)) }

// predict is the length to give TextScanner.Predict: 0 (no prediction) when
// the real length is not known.
func (l rawLen) predict() int {
	if l == math.MaxUint16 {
		return 0
	}
	return int(l)
}

// seriesEntry.flags: the entry's position in the scrape it was last seen in
// (TargetCache.cur) in the low 24 bits, saturated (posNone: too far to say),
// then its enrichState and two flags.
const (
	posBits     = 24
	posNone     = 1<<posBits - 1
	enrichShift = posBits
	enrichMask  = 7 << enrichShift
	staleBit    = 1 << 27 // its stale marker went: it was not in the last scrape
	liveBit     = 1 << 28 // the slot holds a series (evicted slots are reused)
)

// pos is the entry's index in the scrape it was last seen in, posNone if it
// was too far in to say: a hint only, that the caller checks.
func (e *seriesEntry) pos() int { return int(e.flags & posNone) }

func (e *seriesEntry) enrich() enrichState { return enrichState(e.flags & enrichMask >> enrichShift) }

func (e *seriesEntry) setEnrich(s enrichState) {
	e.flags = e.flags&^enrichMask | uint32(s)<<enrichShift
}

func (e *seriesEntry) stale() bool { return e.flags&staleBit != 0 }

func (e *seriesEntry) live() bool { return e.flags&liveBit != 0 }

// sighted records that the entry is the series at index pos of this scrape:
// not stale, at pos.
func (e *seriesEntry) sighted(pos int) {
	e.flags = e.flags&^(posNone|staleBit) | uint32(min(pos, posNone))
}
