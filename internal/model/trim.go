package model

// Trim gives back the spare capacity of the interner's arrays (append grows
// them by up to a quarter) and of its indexes (up to half empty), for a
// producer whose labels stopped growing, as a scrape target's do after its
// first scrape. Snapshots taken before keep the old arrays for as long as
// they are held; the next Table is built on the trimmed ones, with the same
// ID (the content is the same).
func (b *LabelInterner) Trim() {
	b.trimIndexes()
	if !spare(len(b.syms), cap(b.syms)) && !spare(len(b.symOff), cap(b.symOff)) && !spare(len(b.rests), cap(b.rests)) {
		return
	}
	b.syms = append(make([]byte, 0, len(b.syms)), b.syms...)
	b.symOff = append(make([]uint32, 0, len(b.symOff)), b.symOff...)
	b.rests = append(make([]uint32, 0, len(b.rests)), b.rests...)
	b.snapshot = nil
}

// spare reports whether a slice has more than 1/16 of its length unused.
func spare(n, c int) bool { return c-n > n/16 }
