package diskqueue

import (
	"slices"
	"sync"
)

// Window lets several senders work on records at once while acknowledging
// them in order: Ack is cumulative, so a record may only be acknowledged
// once it and every record before it are done. Memory: one entry per
// record in flight.
type Window struct {
	q    *Queue
	mu   sync.Mutex
	pos  []Pos // records started and not yet acknowledged, in read order
	done []bool
}

// NewWindow returns a Window for q.
func (q *Queue) NewWindow() *Window { return &Window{q: q} }

// Start registers r; call it right after Next, in the order Next returned.
func (w *Window) Start(r Record) {
	w.mu.Lock()
	w.pos = append(w.pos, r.Pos)
	w.done = append(w.done, false)
	w.mu.Unlock()
}

// Done marks r as finished (sent, or given up for good) and acknowledges
// the longest finished prefix.
func (w *Window) Done(r Record) {
	w.mu.Lock()
	defer w.mu.Unlock()
	i, found := slices.BinarySearchFunc(w.pos, r.Pos, func(a, b Pos) int {
		switch {
		case a.less(b):
			return -1
		case b.less(a):
			return 1
		}
		return 0
	})
	if !found {
		return
	}
	w.done[i] = true
	k := 0
	for k < len(w.done) && w.done[k] {
		k++
	}
	if k == 0 {
		return
	}
	w.q.Ack(Record{Pos: w.pos[k-1]})
	w.pos = w.pos[:copy(w.pos, w.pos[k:])]
	w.done = w.done[:copy(w.done, w.done[k:])]
}

// InFlight returns how many records are started and not yet acknowledged.
func (w *Window) InFlight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pos)
}
