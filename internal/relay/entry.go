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

// ver32 is the scope's version as entries keep it (seriesEntry.nsVer).
func (s *scope) ver32() uint32 { return uint32(s.ver) }
