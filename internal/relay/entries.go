package relay

import "iter"

// entryChunkBits sets the size of entryStore's chunks: 512 entries, 20 KiB
// of 40-byte entries.
const (
	entryChunkBits = 9
	entryChunk     = 1 << entryChunkBits
)

// entryStore holds a target's cache entries, numbered from 0, in chunks of
// entryChunk that never move: growing it allocates a chunk and copies
// nothing. A single slice grown by append copied every entry at each
// growth and, under pod churn (a cache that grows by the gone pods' series
// for evictAfter scrapes before it frees any), faulted in twice its size
// in fresh memory: a sixth of the relay's extra CPU in the load test's
// churn window (-pprof), most of it in the first rounds. Chunks hold no
// pointer, so the garbage collector scans only the short chunk list.
//
// Every chunk has entryChunk entries (its len) but the last, which may be
// shorter: trim cuts it to the entries in use after a first scrape, and the
// next add gives it its full size again.
type entryStore struct {
	chunks [][]seriesEntry
	n      int // entries given out (live or free), numbered 0..n-1
}

// at returns entry i (i < len()).
func (s *entryStore) at(i uint32) *seriesEntry {
	return &s.chunks[i>>entryChunkBits][i&(entryChunk-1)]
}

// len is the number of entries given out.
func (s *entryStore) len() int { return s.n }

// capacity is the number of entries the chunks have room for.
func (s *entryStore) capacity() int {
	if len(s.chunks) == 0 {
		return 0
	}
	return (len(s.chunks)-1)*entryChunk + len(s.chunks[len(s.chunks)-1])
}

// add gives out a new entry, zero, and returns its number.
func (s *entryStore) add() uint32 {
	if s.n == s.capacity() {
		s.grow()
	}
	i := uint32(s.n)
	s.n++
	*s.at(i) = seriesEntry{}
	return i
}

// grow adds room for at least one entry: a full-size last chunk (a
// trimmed one is copied into one, at most a chunk's copy), or a new chunk.
func (s *entryStore) grow() {
	if k := len(s.chunks) - 1; k >= 0 && len(s.chunks[k]) < entryChunk {
		full := make([]seriesEntry, entryChunk)
		copy(full, s.chunks[k])
		s.chunks[k] = full
		return
	}
	s.chunks = append(s.chunks, make([]seriesEntry, entryChunk))
}

// reserve makes room for n entries in all.
func (s *entryStore) reserve(n int) {
	for s.capacity() < n {
		s.grow()
	}
}

// trim gives back the room past the entries given out (the last chunk's),
// for a cache whose series stopped growing.
func (s *entryStore) trim() {
	k := len(s.chunks) - 1
	if k < 0 {
		return
	}
	used := s.n - k*entryChunk
	switch {
	case used == len(s.chunks[k]):
	case used == 0:
		s.chunks[k] = nil
		s.chunks = s.chunks[:k]
	default:
		s.chunks[k] = append([]seriesEntry(nil), s.chunks[k][:used]...)
	}
}

// all yields every entry given out, in order, with its number.
func (s *entryStore) all() iter.Seq2[uint32, *seriesEntry] {
	return func(yield func(uint32, *seriesEntry) bool) {
		left := s.n
		for k, ch := range s.chunks {
			if left <= 0 {
				return
			}
			ch = ch[:min(len(ch), left)]
			left -= len(ch)
			base := uint32(k) << entryChunkBits
			for j := range ch {
				if !yield(base+uint32(j), &ch[j]) {
					return
				}
			}
		}
	}
}
