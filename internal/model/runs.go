package model

import (
	"bytes"
	"slices"
)

// Runs in two levels. The series of one container share most of their
// labels but not all: histogram buckets differ in le, cAdvisor series in
// cpu, device, interface, state... Stored flat, each such variant is a run
// of its own, ~13 symbols of which one or two differ from its neighbour's.
// So a run is stored either flat (a root) or as a root plus a few edits (a
// child): the container's labels once, then a word or two a variant.
// Children never have children, so expanding one is a single pass.
//
// In LabelTable.rests, at a run's offset r:
//
//	root:  [count, encoded length, symbol...]
//	child: [childRun | edits<<28 | count<<20 | encoded length, root offset, edit...]
//
// An edit is op<<30 | pos<<24 | symbol, applied in order while walking the
// root's symbols: insert the symbol before the root's symbol pos, replace
// that one by it, or delete it. Whatever the edits, a run means its
// symbols in order: two runs with the same symbols are the same run, found
// by the same hash (hashRun of the expanded symbols), and encode alike.

const (
	childRun = 1 << 31
	// A child's first word: its number of edits (up to maxChildEdits), of
	// symbols and the length of their encodings, as far as they fit.
	childEditsShift = 28
	childCountShift = 20
	maxChildCount   = 1<<(childEditsShift-childCountShift) - 1
	maxChildLen     = 1<<childCountShift - 1

	editInsert  = 0
	editReplace = 1
	editDelete  = 2
	editSymBits = 24
	// maxEditPos bounds the root's length for a child's edits to address.
	maxEditPos = 1<<(30-editSymBits) - 1
	// maxChildEdits is the most edits a child has: a variant differs from
	// its container's root in a label or two (its le, its cpu and device),
	// a series of another container in five or more (container, id, image,
	// name, pod), which makes it a root of its own, where the next variants
	// of that container find their parent.
	maxChildEdits = 4
)

// runHeader returns the number of symbols of the run at r and the length
// of their encodings.
func runHeader(rests []uint32, r uint32) (count, encLen uint32) {
	if h := rests[r]; h&childRun != 0 {
		return h >> childCountShift & maxChildCount, h & maxChildLen
	}
	return rests[r], rests[r+1]
}

// runEncLen is the length of the encodings of the run at r.
func runEncLen(rests []uint32, r uint32) uint32 {
	if h := rests[r]; h&childRun != 0 {
		return h & maxChildLen
	}
	return rests[r+1]
}

// runWords is the length of the run's record at r.
func runWords(rests []uint32, r uint32) uint32 {
	if h := rests[r]; h&childRun != 0 {
		return 2 + (h&^childRun)>>childEditsShift
	}
	return 2 + rests[r]
}

// childParts returns the symbols of the root of the child run at r, and
// the child's edits.
func childParts(rests []uint32, r uint32) (root, edits []uint32) {
	base := rests[r+1]
	n := (rests[r] &^ childRun) >> childEditsShift
	return rests[base+2 : base+2+rests[base]], rests[r+2 : r+2+n]
}

// runCursor walks the symbols of a run.
type runCursor struct {
	root  []uint32 // the root's symbols not walked yet
	edits []uint32 // edits not applied yet
	pos   uint32   // the root position of root[0]
}

func newRunCursor(rests []uint32, r uint32) runCursor {
	h := rests[r]
	if h&childRun == 0 {
		return runCursor{root: rests[r+2 : r+2+h : r+2+h]}
	}
	root, edits := childParts(rests, r)
	return runCursor{root: root, edits: edits}
}

// next returns the next symbol of the run, or false at its end.
func (c *runCursor) next() (uint32, bool) {
	for len(c.edits) > 0 {
		e := c.edits[0]
		if (e>>editSymBits)&maxEditPos != c.pos {
			break
		}
		c.edits = c.edits[1:]
		switch e >> 30 {
		case editInsert:
			return e & (1<<editSymBits - 1), true
		case editReplace:
			c.root, c.pos = c.root[1:], c.pos+1
			return e & (1<<editSymBits - 1), true
		default: // editDelete
			c.root, c.pos = c.root[1:], c.pos+1
		}
	}
	if len(c.root) == 0 {
		return 0, false
	}
	s := c.root[0]
	c.root, c.pos = c.root[1:], c.pos+1
	return s, true
}

// appendRun appends the symbols of the run at r to dst: the root's
// stretches between edits are copied whole.
func appendRun(dst []uint32, rests []uint32, r uint32) []uint32 {
	h := rests[r]
	if h&childRun == 0 {
		return append(dst, rests[r+2:r+2+h]...)
	}
	root, edits := childParts(rests, r)
	j := uint32(0)
	for _, e := range edits {
		pos := (e >> editSymBits) & maxEditPos
		dst = append(dst, root[j:pos]...)
		j = pos
		if op := e >> 30; op != editDelete {
			dst = append(dst, e&(1<<editSymBits-1))
		}
		if e>>30 != editInsert {
			j++
		}
	}
	return append(dst, root[j:]...)
}

// runEqual reports whether the run at r has exactly the symbols syms.
func runEqual(rests []uint32, r uint32, syms []uint32) bool {
	h := rests[r]
	if h&childRun == 0 {
		return int(h) == len(syms) && slices.Equal(rests[r+2:r+2+h], syms)
	}
	if int(h>>childCountShift&maxChildCount) != len(syms) {
		return false
	}
	// The expansion has len(syms) symbols: no index below goes past it.
	root, edits := childParts(rests, r)
	i, j := uint32(0), uint32(0) // in syms, in root
	for _, e := range edits {
		pos := (e >> editSymBits) & maxEditPos
		if !slices.Equal(root[j:pos], syms[i:i+pos-j]) {
			return false
		}
		i, j = i+pos-j, pos
		if e>>30 != editDelete {
			if syms[i] != e&(1<<editSymBits-1) {
				return false
			}
			i++
		}
		if e>>30 != editInsert {
			j++
		}
	}
	return slices.Equal(root[j:], syms[i:])
}

// appendChild appends to b.rests the run syms (encodings encLen bytes
// long) as a child, if a root differs from it in few enough edits: false
// (nothing appended) if none does. The roots tried are the last run's (the
// next variant of the same container) and the two that are the shortest
// root of most of syms' symbols (the container's, when the last series was
// another container's).
func (b *LabelInterner) appendChild(syms []uint32, encLen int) bool {
	if len(syms) > maxChildCount || encLen > maxChildLen {
		return false
	}
	// A child takes 2 words and one an edit, a root 2 and one a symbol.
	limit := min(maxChildEdits, len(syms)-1)
	if limit <= 0 {
		return false
	}
	var cand [3]uint32 // root offset + 1; 0: none
	cand[0] = b.lastRoot
	b.votes = b.votes[:0]
	for _, s := range syms {
		r := b.symRoot[s]
		if r == 0 || r == cand[0] {
			continue
		}
		i := slices.IndexFunc(b.votes, func(v rootVote) bool { return v.root == r })
		if i < 0 {
			b.votes = append(b.votes, rootVote{root: r})
			i = len(b.votes) - 1
		}
		b.votes[i].n++
	}
	for k := 1; k < len(cand) && len(b.votes) > 0; k++ {
		best := 0
		for i, v := range b.votes {
			if v.n > b.votes[best].n {
				best = i
			}
		}
		cand[k] = b.votes[best].root
		b.votes = slices.Delete(b.votes, best, best+1)
	}
	root, found := uint32(0), false
	for _, c := range cand {
		if c == 0 {
			continue
		}
		edits, ok := b.diffRun(b.scratchEdits[:0], c-1, syms, limit)
		b.scratchEdits = edits
		if !ok {
			continue
		}
		root, found = c-1, true
		b.edits, b.scratchEdits = edits, b.edits
		if limit = len(edits) - 1; limit < 1 {
			break
		}
	}
	if !found {
		return false
	}
	b.rests = grow(b.rests, 2+len(b.edits))
	b.rests = append(b.rests, childRun|uint32(len(b.edits))<<childEditsShift|uint32(len(syms))<<childCountShift|uint32(encLen), root)
	b.rests = append(b.rests, b.edits...)
	return true
}

// rootVote counts the symbols of a set whose shortest root is root.
type rootVote struct {
	root uint32 // offset + 1
	n    int
}

// diffRun appends to dst the edits that turn the root at root into syms:
// false if that takes more than limit edits.
func (b *LabelInterner) diffRun(dst []uint32, root uint32, syms []uint32, limit int) ([]uint32, bool) {
	rs := b.rests[root+2 : root+2+b.rests[root]]
	if len(rs) > maxEditPos {
		return dst, false
	}
	n := len(dst) + limit
	i, j := 0, 0 // in syms, in rs
	for i < len(syms) || j < len(rs) {
		op := uint32(editInsert)
		switch {
		case i < len(syms) && j < len(rs) && syms[i] == rs[j]:
			i, j = i+1, j+1
			continue
		case j == len(rs):
		case i == len(syms):
			op = editDelete
		default:
			// Both are sorted by name when the set is valid; in any order
			// the edits still give syms, only maybe more of them.
			switch c := bytes.Compare(b.symbolName(syms[i]), b.symbolName(rs[j])); {
			case c == 0:
				op = editReplace
			case c > 0:
				op = editDelete
			}
		}
		if len(dst) == n {
			return dst, false
		}
		e := op<<30 | uint32(j)<<editSymBits
		if op != editDelete {
			if syms[i] >= 1<<editSymBits {
				return dst, false
			}
			e |= syms[i]
			i++
		}
		if op != editInsert {
			j++
		}
		dst = append(dst, e)
	}
	return dst, true
}

// symbolName is the label name in symbol s's encoding.
func (b *LabelInterner) symbolName(s uint32) []byte {
	name, _, _, _ := parseLabel(b.syms[b.symOff[s]:b.symOff[s+1]])
	return name
}

// rootOf is the root of the run at r: r itself or its parent.
func rootOf(rests []uint32, r uint32) uint32 {
	if rests[r]&childRun != 0 {
		return rests[r+1]
	}
	return r
}
