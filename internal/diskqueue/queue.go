// This file is over 500 lines because the queue's writer, reader, checkpoint and recovery
// share one mutex-guarded state (segments, offsets, byte budget): kept in one file so that the
// locking and the on-disk invariants of docs/disk-queue.md can be checked in one read.

package diskqueue

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Errors. Test with errors.Is.
var (
	// ErrUnavailable: the disk refused (full, read-only, directory gone,
	// I/O error). The caller keeps the data in memory instead; the queue
	// tries again after Options.RetryInterval.
	ErrUnavailable = errors.New("disk queue unavailable")
	// ErrTooLarge: the payload is larger than Options.MaxRecordBytes.
	ErrTooLarge = errors.New("record too large for the disk queue")
	// ErrClosed: the queue was closed.
	ErrClosed = errors.New("disk queue closed")
	// ErrLocked: another process holds the directory.
	ErrLocked = errors.New("disk queue directory locked")
)

const checkpointName = "checkpoint"

// Pos is a position in the queue: the end of a record in a segment.
type Pos struct {
	Seg uint64
	Off int64
}

func (p Pos) less(q Pos) bool { return p.Seg < q.Seg || p.Seg == q.Seg && p.Off < q.Off }

// Record is one record read by Next. Payload aliases the queue's read buffer
// and is valid until the next call to Next; for a Kept record it is the
// payload given to AppendKeep, the caller's again.
type Record struct {
	Header
	Payload []byte
	Pos     Pos
	// Kept: handed out from memory as appended (AppendKeep), not read
	// back from disk.
	Kept bool
}

// keptRecord is a record appended with AppendKeep and not yet handed out:
// Next takes it from here when the reader reaches start.
type keptRecord struct {
	start   Pos
	h       Header
	payload []byte
}

type tally struct{ records, samples int64 }

func (t *tally) add(h Header) { t.records++; t.samples += int64(h.Samples) }

type segment struct {
	seq     uint64
	size    int64 // bytes of valid data (the file may hold a torn tail beyond)
	total   tally // records in the segment (valid ones, as far as known)
	read    tally // handed out by Next
	acked   tally
	minT    int64 // oldest sample in the segment (lower bound once partly acked)
	dropped bool
}

type pending struct {
	pos     Pos
	samples int64
	minT    int64
	done    bool // finished (Done) while a record before it is not
}

// Queue is a bounded FIFO of records on disk for one endpoint: any number of
// goroutines Append, one consumer calls Next then Ack after sending.
//
// Delivery is at least once: a record read and neither acknowledged (Ack)
// nor finished (Done) is read again after a restart; one finished is not,
// even out of order (see checkpoint.go). After a power loss, also what was
// acknowledged since the checkpoint's last fsync (SyncInterval).
type Queue struct {
	opts   Options
	logger *slog.Logger
	m      *metrics

	notify    chan struct{} // one token: data appended
	closed    chan struct{}
	closeOnce sync.Once
	syncDone  chan struct{}

	syncMu sync.Mutex // one Sync at a time
	readMu sync.Mutex // one Next at a time; owns rfile

	mu        sync.Mutex
	isClosed  bool
	lock      *os.File
	dirIno    uint64
	segs      []*segment
	w         *os.File // write segment file; nil when the disk failed
	wseg      *segment
	nextSeq   uint64
	frame     [frameSize + recHeaderSize]byte
	dirty     bool       // w has unsynced writes
	dirDirty  bool       // directory entries changed since the last sync
	toClose   []*os.File // sealed segments to fsync and close
	broken    error      // why w is nil
	lastRetry time.Time
	rpos      Pos       // next record to read starts at rpos.Off of segment rpos.Seg
	pend      []pending // read and not acknowledged, in read order
	preDone   []Pos     // finished before the last restart, not read yet
	ack       Pos
	// kept are the records AppendKeep held in memory, in append order, not
	// yet handed out; direct says that every record not yet read is among
	// them (nothing is backlogged on disk only), so AppendKeep may keep
	// the next one. It turns false when a record goes to disk only (an
	// Append, AppendKeep beyond KeepBytes) and true again only when the
	// reader has caught up with the writer.
	kept      []keptRecord
	keptBytes int64
	direct    bool
	ckGen     uint64
	ckRenew   bool // the checkpoint file must be re-created (directory re-created)
	bytes     int64
	unacked   tally

	// checkpoint file; writes in generation order, under ckMu (taken
	// while holding mu, which is then released: lock order mu, ckMu)
	ckMu       sync.Mutex
	ckFile     *os.File
	ckBuf      [ckSlotSize]byte
	ckSnap     checkpoint // what ckBuf is encoded from
	ckUnsynced bool
	ckBroken   bool

	// reader side, under readMu
	rfile    *os.File
	rfileSeq uint64
	rbuf     []byte
}

// Open opens or creates the queue in opts.Dir, validating every segment and
// resuming after the last checkpointed acknowledgement. A new segment is
// always started: old ones are only read.
func Open(opts Options, logger *slog.Logger, reg prometheus.Registerer) (*Queue, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Name, reg)
	if err != nil {
		return nil, fmt.Errorf("diskqueue %s: metrics: %w", opts.Name, err)
	}
	q := &Queue{
		opts:     opts,
		logger:   logger.With("component", "diskqueue", "remote_name", opts.Name, "dir", opts.Dir),
		m:        m,
		notify:   make(chan struct{}, 1),
		closed:   make(chan struct{}),
		syncDone: make(chan struct{}),
		nextSeq:  1,
	}
	if err := q.openDir(); err != nil {
		return nil, err
	}
	if err := q.load(); err != nil {
		q.lock.Close()
		return nil, err
	}
	q.mu.Lock()
	err = q.newSegmentLocked()
	q.preDone = slices.DeleteFunc(q.preDone, func(p Pos) bool { return !q.ack.less(p) })
	q.direct = q.unacked.records == 0
	q.updateGaugesLocked()
	var ck checkpoint
	q.snapshotLocked(&ck)
	q.mu.Unlock()
	if err == nil {
		if q.ckFile, err = createCheckpoint(q.opts.Dir, &ck); err != nil {
			err = unavailable("write checkpoint", err)
		}
	}
	if err != nil {
		q.lock.Close()
		return nil, err
	}
	go q.syncLoop()
	return q, nil
}

func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// openDir creates and locks the directory and notes its inode, to notice
// when it is removed or replaced.
func (q *Queue) openDir() error {
	if err := os.MkdirAll(q.opts.Dir, 0o755); err != nil {
		return unavailable("create directory", err)
	}
	lock, err := lockDir(q.opts.Dir)
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return err
		}
		return unavailable("lock directory", err)
	}
	ino, err := inode(q.opts.Dir)
	if err != nil {
		lock.Close()
		return unavailable("stat directory", err)
	}
	if q.lock != nil {
		q.lock.Close()
	}
	q.lock, q.dirIno = lock, ino
	return nil
}

func inode(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino, nil
	}
	return 0, nil
}

func (q *Queue) segPath(seq uint64) string {
	return filepath.Join(q.opts.Dir, fmt.Sprintf("%020d.seg", seq))
}

// load scans the directory: the checkpoint, then every segment, counting
// its valid records. Corrupt records are left for the reader, which skips
// and counts them when it gets there.
func (q *Queue) load() error {
	entries, err := os.ReadDir(q.opts.Dir)
	if err != nil {
		return unavailable("read directory", err)
	}
	var seqs []uint64
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".seg"):
			seq, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64)
			if err != nil || seq == 0 {
				q.logger.Warn("ignoring unknown file in queue directory", "file", name)
				continue
			}
			seqs = append(seqs, seq)
		case name == checkpointName+".tmp":
			os.Remove(filepath.Join(q.opts.Dir, name))
		}
	}
	slices.Sort(seqs)
	ck, cpErr := readCheckpoint(filepath.Join(q.opts.Dir, checkpointName))
	if cpErr != nil && !errors.Is(cpErr, fs.ErrNotExist) {
		q.logger.Error("checkpoint unreadable, reading from the oldest segment", "err", cpErr)
		ck = checkpoint{}
	}
	cp := ck.ack
	q.ckGen = ck.gen
	var buf []byte
	for _, seq := range seqs {
		q.nextSeq = seq + 1
		path := q.segPath(seq)
		if seq < cp.Seg {
			// Fully acknowledged before the last run ended.
			os.Remove(path)
			q.dirDirty = true
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			return unavailable("open segment", err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return unavailable("stat segment", err)
		}
		s := &segment{seq: seq, size: fi.Size(), minT: 0}
		hb := make([]byte, segHeaderSize)
		if _, err := f.ReadAt(hb, 0); err != nil || checkSegHeader(hb) != nil {
			// Nothing in it can be trusted; count it once and remove it.
			f.Close()
			q.logger.Error("segment header invalid, dropping the segment", "segment", path, "bytes", s.size)
			q.m.droppedRecords.WithLabelValues(reasonCorrupt).Inc()
			q.m.droppedBytes.WithLabelValues(reasonCorrupt).Add(float64(s.size))
			os.Remove(path)
			q.dirDirty = true
			continue
		}
		start := int64(segHeaderSize)
		if seq == cp.Seg && cp.Off >= segHeaderSize && cp.Off <= s.size {
			start = cp.Off
		}
		off := int64(segHeaderSize)
		for off < s.size {
			var h Header
			var next int64
			h, _, next, buf, err = readRecord(f, off, s.size, q.opts.MaxRecordBytes, buf)
			if err != nil {
				if next < 0 {
					break
				}
				off = next
				continue
			}
			s.total.add(h)
			if off < start {
				s.read.add(h)
				s.acked.add(h)
			} else if s.total.records-s.read.records == 1 || h.MinT < s.minT {
				s.minT = h.MinT
			}
			off = next
		}
		f.Close()
		if len(q.segs) == 0 {
			q.rpos = Pos{seq, start}
			q.ack = q.rpos
		}
		q.segs = append(q.segs, s)
		q.bytes += s.size
		q.unacked.records += s.total.records - s.acked.records
		q.unacked.samples += s.total.samples - s.acked.samples
	}
	// Records finished out of order before the restart: skipped when read.
	q.preDone = slices.DeleteFunc(ck.done, func(p Pos) bool { return !q.ack.less(p) })
	// New segments must sort after the checkpoint's, or a restart before
	// the next checkpoint would delete them or skip into them.
	q.nextSeq = max(q.nextSeq, cp.Seg+1)
	if len(q.segs) > 0 {
		q.logger.Info("disk queue opened", "segments", len(q.segs), "bytes", q.bytes, "records", q.unacked.records, "samples", q.unacked.samples, "resume", q.rpos)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// newSegmentLocked starts a new write segment, handing the old one to the
// next Sync to fsync and close.
func (q *Queue) newSegmentLocked() error {
	seq := q.nextSeq
	path := q.segPath(seq)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return q.failLocked("create segment", err)
	}
	var hb [segHeaderSize]byte
	putSegHeader(hb[:])
	if _, err := f.WriteAt(hb[:], 0); err != nil {
		f.Close()
		os.Remove(path)
		return q.failLocked("write segment header", err)
	}
	q.nextSeq++
	q.sealLocked()
	q.w = f
	q.wseg = &segment{seq: seq, size: segHeaderSize}
	q.segs = append(q.segs, q.wseg)
	q.bytes += segHeaderSize
	q.dirty, q.dirDirty = true, true
	q.broken = nil
	if len(q.segs) == 1 {
		q.rpos = Pos{seq, segHeaderSize}
		q.ack = q.rpos
	}
	return nil
}

// sealLocked stops writing the current segment.
func (q *Queue) sealLocked() {
	if q.w != nil {
		q.toClose = append(q.toClose, q.w)
		q.w = nil
	}
	q.wseg = nil
}

// failLocked records a disk failure: the write segment is sealed at its
// last complete record and Append fails until a retry succeeds.
func (q *Queue) failLocked(op string, err error) error {
	reason := "io"
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		reason = "enospc"
	case errors.Is(err, syscall.EROFS), errors.Is(err, fs.ErrPermission):
		reason = "readonly"
	case errors.Is(err, fs.ErrNotExist):
		reason = "removed"
	}
	q.m.appendErrors.WithLabelValues(reason).Inc()
	q.sealLocked()
	q.broken = unavailable(op, err)
	q.lastRetry = time.Now()
	q.logger.Error("disk queue write failed; appends fail until it recovers", "op", op, "reason", reason, "err", err, "retry_in", q.opts.RetryInterval)
	return q.broken
}

// Append adds a record. It fails with ErrUnavailable when the disk refuses
// (the caller keeps the data in memory), ErrTooLarge or ErrClosed. Old
// segments are dropped first if the record would not fit in MaxBytes.
func (q *Queue) Append(h Header, payload []byte) error {
	_, err := q.appendRecord(h, payload, false)
	return err
}

// AppendKeep is Append that also hands payload to the queue when nothing
// is backlogged on disk (every record not yet read was kept too) and the
// kept records stay within KeepBytes: Next then hands the record out from
// memory, in its place in the order, without reading it back (Record.Kept).
// kept says the queue took payload: the caller must not touch it again
// (Next's caller owns it then). Otherwise the record is on disk only, and
// later records are not kept until the reader has caught up with it.
func (q *Queue) AppendKeep(h Header, payload []byte) (kept bool, err error) {
	return q.appendRecord(h, payload, true)
}

func (q *Queue) appendRecord(h Header, payload []byte, keep bool) (kept bool, _ error) {
	if len(payload) > q.opts.MaxRecordBytes {
		return false, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(payload), q.opts.MaxRecordBytes)
	}
	n := int64(frameSize + recHeaderSize + len(payload))
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.isClosed {
		return false, ErrClosed
	}
	if q.w == nil {
		if time.Since(q.lastRetry) < q.opts.RetryInterval {
			q.m.appendErrors.WithLabelValues("retry_wait").Inc()
			return false, q.broken
		}
		q.lastRetry = time.Now()
		if err := q.recoverDirLocked(); err != nil {
			return false, err
		}
		if err := q.newSegmentLocked(); err != nil {
			return false, err
		}
		q.logger.Info("disk queue writable again", "segment", q.segPath(q.wseg.seq))
	}
	if q.wseg.size > segHeaderSize && q.wseg.size+n > q.opts.SegmentBytes {
		if err := q.newSegmentLocked(); err != nil {
			return false, err
		}
	}
	if err := q.makeRoomLocked(n); err != nil {
		return false, err
	}
	putFrame(q.frame[:], h, payload)
	off := q.wseg.size
	_, err := q.w.WriteAt(q.frame[:], off)
	if err == nil {
		_, err = q.w.WriteAt(payload, off+int64(len(q.frame)))
	}
	if err != nil {
		// Cut off the partial record so that the file stays clean; if even
		// that fails, the segment's size still ends at the last whole
		// record and the reader never looks past it.
		_ = q.w.Truncate(off)
		return false, q.failLocked("write record", err)
	}
	s := q.wseg
	if s.total.records == s.read.records || h.MinT < s.minT {
		s.minT = h.MinT
	}
	s.size += n
	s.total.add(h)
	q.bytes += n
	q.unacked.records++
	q.unacked.samples += int64(h.Samples)
	q.dirty = true
	q.m.appendedRecords.Inc()
	q.m.appendedBytes.Add(float64(n))
	if keep && q.direct && (len(q.kept) == 0 || q.keptBytes+int64(len(payload)) <= q.opts.KeepBytes) {
		q.kept = append(q.kept, keptRecord{start: Pos{s.seq, off}, h: h, payload: payload})
		q.keptBytes += int64(len(payload))
		kept = true
	} else {
		q.direct = false // on disk only: a backlog the reader reads back
	}
	q.updateGaugesLocked()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return kept, nil
}

// recoverDirLocked re-creates the directory (and its lock) if it was
// removed or replaced.
func (q *Queue) recoverDirLocked() error {
	ino, err := inode(q.opts.Dir)
	if err == nil && ino == q.dirIno {
		return nil
	}
	if err := q.openDir(); err != nil {
		q.broken = err
		q.m.appendErrors.WithLabelValues("removed").Inc()
		return err
	}
	q.ckRenew = true // the old file went with the old directory
	return nil
}

// makeRoomLocked drops the oldest segments until n more bytes fit.
func (q *Queue) makeRoomLocked(n int64) error {
	for q.bytes+n > q.opts.MaxBytes && len(q.segs) > 0 {
		if q.segs[0] == q.wseg {
			// Only the write segment is left: start another so that the
			// old one can go.
			if err := q.newSegmentLocked(); err != nil {
				return err
			}
		}
		q.dropLocked(q.segs[0], reasonFull)
	}
	return nil
}

// dropLocked removes the oldest segment, counting what was never read.
func (q *Queue) dropLocked(s *segment, reason string) {
	unread := tally{s.total.records - s.read.records, s.total.samples - s.read.samples}
	if unread.records > 0 || reason != reasonFull {
		q.m.droppedRecords.WithLabelValues(reason).Add(float64(unread.records))
		q.m.droppedSamples.WithLabelValues(reason).Add(float64(unread.samples))
		q.m.droppedBytes.WithLabelValues(reason).Add(float64(s.size))
		q.logger.Warn("dropped disk queue segment", "reason", reason, "segment", s.seq, "records", unread.records, "samples", unread.samples, "bytes", s.size)
	}
	if err := os.Remove(q.segPath(s.seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		q.logger.Error("remove dropped segment", "segment", s.seq, "err", err)
	}
	q.dirDirty = true
	q.forgetLocked(s)
	// Records handed out but not acknowledged are the sender's now; they
	// leave the on-disk counts with the segment.
	q.pend = slices.DeleteFunc(q.pend, func(p pending) bool { return p.pos.Seg == s.seq })
	q.preDone = slices.DeleteFunc(q.preDone, func(p Pos) bool { return p.Seg == s.seq })
}

// forgetLocked takes a segment out of the list and the counts.
func (q *Queue) forgetLocked(s *segment) {
	s.dropped = true
	q.segs = slices.DeleteFunc(q.segs, func(x *segment) bool { return x == s })
	q.bytes -= s.size
	q.unacked.records -= s.total.records - s.acked.records
	q.unacked.samples -= s.total.samples - s.acked.samples
	if s == q.wseg {
		q.sealLocked()
	}
	if q.rpos.Seg <= s.seq {
		q.rpos = Pos{s.seq + 1, segHeaderSize}
	}
	q.dropKeptLocked(func(k *keptRecord) bool { return k.start.Seg == s.seq })
	q.updateGaugesLocked()
}

// popKeptLocked removes the first kept record and returns it.
func (q *Queue) popKeptLocked() keptRecord {
	k := q.kept[0]
	n := copy(q.kept, q.kept[1:])
	q.kept[n] = keptRecord{}
	q.kept = q.kept[:n]
	q.keptBytes -= int64(len(k.payload))
	return k
}

// dropKeptLocked forgets the kept records that match.
func (q *Queue) dropKeptLocked(match func(*keptRecord) bool) {
	q.kept = slices.DeleteFunc(q.kept, func(k keptRecord) bool {
		if match(&k) {
			q.keptBytes -= int64(len(k.payload))
			return true
		}
		return false
	})
}

func (q *Queue) updateGaugesLocked() {
	q.m.bytes.Set(float64(q.bytes))
	q.m.records.Set(float64(q.unacked.records))
	q.m.samples.Set(float64(q.unacked.samples))
	oldest := int64(0)
	if len(q.pend) > 0 {
		oldest = q.pend[0].minT
	}
	for _, s := range q.segs {
		if s.total.records > s.read.records {
			if len(q.pend) == 0 || s.minT < oldest {
				oldest = s.minT
			}
			break
		}
	}
	q.m.oldest.Set(float64(oldest) / 1000)
}

// Next returns the next record, waiting for one until ctx is done or the
// queue is closed. Corrupt and torn records are skipped (logged, counted).
// The payload is valid until the next call to Next.
func (q *Queue) Next(ctx context.Context) (Record, error) {
	q.readMu.Lock()
	defer q.readMu.Unlock()
	rec, buf, err := q.nextLocked(ctx, q.rbuf, nil)
	q.rbuf = buf
	return rec, err
}

// NextInto is Next reading into a buffer of the caller's: getBuf is called
// (at most once) when a record must be read from disk, and its buffer,
// grown as needed, is returned as buf (nil if getBuf was not called). The
// payload of a record read from disk aliases buf, which stays the
// caller's, so a sender can keep it without a copy and the queue holds no
// read buffer. A Kept record's payload is the one given to AppendKeep, and
// buf, if any, is unused.
func (q *Queue) NextInto(ctx context.Context, getBuf func() []byte) (rec Record, buf []byte, err error) {
	q.readMu.Lock()
	defer q.readMu.Unlock()
	return q.nextLocked(ctx, nil, getBuf)
}

func (q *Queue) nextLocked(ctx context.Context, buf []byte, getBuf func() []byte) (Record, []byte, error) {
	for {
		rec, ok, err := q.tryRead(&buf, getBuf)
		if err != nil || ok {
			return rec, buf, err
		}
		select {
		case <-ctx.Done():
			return Record{}, buf, ctx.Err()
		case <-q.closed:
			return Record{}, buf, ErrClosed
		case <-q.notify:
		}
	}
}

// tryRead reads one record if there is one: a kept one from memory, else
// from disk (into *rbuf, from getBuf if nil). The file is read outside q.mu
// so that appends go on meanwhile; a segment dropped during the read is
// noticed afterwards and what was read from it discarded.
func (q *Queue) tryRead(rbuf *[]byte, getBuf func() []byte) (Record, bool, error) {
	for {
		q.mu.Lock()
		if q.isClosed {
			q.mu.Unlock()
			return Record{}, false, ErrClosed
		}
		var s *segment
		for _, x := range q.segs {
			if x.seq >= q.rpos.Seg {
				s = x
				break
			}
		}
		if s == nil {
			q.direct = true
			q.mu.Unlock()
			return Record{}, false, nil
		}
		if s.seq != q.rpos.Seg {
			q.rpos = Pos{s.seq, segHeaderSize}
		}
		off, limit := q.rpos.Off, s.size
		if off >= limit {
			if s == q.segs[len(q.segs)-1] {
				q.direct = true // caught up with the writer: no backlog
				q.mu.Unlock()
				return Record{}, false, nil
			}
			q.leaveSegmentLocked(s)
			q.mu.Unlock()
			continue
		}
		// A kept record before the reader was skipped with a corrupt
		// region (which ends at the next kept record, so this does not
		// happen): forget it rather than hold it forever.
		for len(q.kept) > 0 && q.kept[0].start.less(q.rpos) {
			q.popKeptLocked() // kept in order: only a prefix can be behind
		}
		if len(q.kept) > 0 && q.kept[0].start == q.rpos {
			k := q.popKeptLocked()
			next := off + frameSize + recHeaderSize + int64(len(k.payload))
			end, finished := q.takeLocked(s, off, next, k.h)
			q.m.directRecords.Inc()
			q.mu.Unlock()
			if finished {
				continue
			}
			return Record{Header: k.h, Payload: k.payload, Pos: end, Kept: true}, true, nil
		}
		var nextKept int64 = -1 // where a corrupt region ends at the latest
		if len(q.kept) > 0 && q.kept[0].start.Seg == s.seq {
			nextKept = q.kept[0].start.Off
		}
		q.mu.Unlock()
		if *rbuf == nil && getBuf != nil {
			*rbuf = getBuf()
		}

		if q.rfile == nil || q.rfileSeq != s.seq {
			q.closeReadFile()
			f, err := os.Open(q.segPath(s.seq))
			if err != nil {
				q.mu.Lock()
				if !s.dropped {
					q.logger.Error("segment cannot be opened for reading, skipping it", "segment", s.seq, "err", err)
					q.dropLocked(s, reasonRemoved)
				}
				q.mu.Unlock()
				continue
			}
			q.rfile, q.rfileSeq = f, s.seq
		}
		h, payload, next, buf, rerr := readRecord(q.rfile, off, limit, q.opts.MaxRecordBytes, *rbuf)
		*rbuf = buf

		q.mu.Lock()
		if s.dropped || q.rpos != (Pos{s.seq, off}) {
			q.mu.Unlock()
			continue
		}
		if rerr != nil {
			re := rerr.(*recordError)
			skipTo := re.next
			if skipTo < 0 {
				skipTo = limit
			}
			if nextKept > off && nextKept < skipTo {
				skipTo = nextKept // a whole record starts there
			}
			q.m.droppedRecords.WithLabelValues(re.reason).Inc()
			q.m.droppedBytes.WithLabelValues(re.reason).Add(float64(skipTo - off))
			q.logger.Error("skipping unreadable disk queue record", "segment", q.segPath(s.seq), "reason", re.reason, "err", rerr, "skipped_bytes", skipTo-off)
			q.rpos.Off = skipTo
			q.mu.Unlock()
			continue
		}
		end, finished := q.takeLocked(s, off, next, h)
		q.mu.Unlock()
		if finished {
			continue
		}
		return Record{Header: h, Payload: payload, Pos: end}, true, nil
	}
}

// takeLocked moves the reader past the record [off, next) of s, with
// header h, handing it out (pending until acknowledged). finished: it was
// finished before the restart (out of order), so it is not handed out
// again but acknowledged with the prefix before it.
func (q *Queue) takeLocked(s *segment, off, next int64, h Header) (end Pos, finished bool) {
	end = Pos{s.seq, next}
	for len(q.preDone) > 0 && q.preDone[0].less(end) {
		q.preDone = q.preDone[1:] // its record was skipped as corrupt
	}
	finished = len(q.preDone) > 0 && q.preDone[0] == end
	if finished {
		q.preDone = q.preDone[1:]
	}
	q.rpos.Off = next
	s.read.add(h)
	q.pend = append(q.pend, pending{end, int64(h.Samples), h.MinT, finished})
	q.m.readRecords.Inc()
	q.m.readBytes.Add(float64(next - off))
	if finished {
		q.advanceLocked()
	} else {
		q.updateGaugesLocked()
	}
	return end, finished
}

// leaveSegmentLocked moves the reader past a fully read, sealed segment.
// Records counted at load but not found (corrupt since) leave the counts.
func (q *Queue) leaveSegmentLocked(s *segment) {
	if miss := s.total.records - s.read.records; miss > 0 {
		ms := s.total.samples - s.read.samples
		s.total = s.read
		q.unacked.records -= miss
		q.unacked.samples -= ms
	}
	q.rpos = Pos{s.seq + 1, segHeaderSize}
	q.trimAckedLocked()
	q.updateGaugesLocked()
}

func (q *Queue) closeReadFile() {
	if q.rfile != nil {
		q.rfile.Close()
		q.rfile = nil
	}
}

// Ack acknowledges r and every record before it: they were sent and need
// not be read again. Segments wholly acknowledged are deleted.
func (q *Queue) Ack(r Record) {
	q.mu.Lock()
	if !q.ack.less(r.Pos) {
		q.mu.Unlock()
		return
	}
	for i := range q.pend {
		if r.Pos.less(q.pend[i].pos) {
			break
		}
		q.pend[i].done = true
	}
	q.advanceLocked()
	if q.ack.less(r.Pos) {
		q.ack = r.Pos // r itself was not pending (its segment dropped)
	}
	q.checkpointUnlock()
}

// Done says that r is finished (sent, or given up for good), in any order:
// several senders may work on records at once. The longest finished prefix
// is acknowledged; a record finished beyond it is kept in the checkpoint
// and not read again after a restart, so that a restart re-sends only
// records whose delivery did not finish (a receiver rejects an older
// sample of a series it has newer ones of as out of order).
func (q *Queue) Done(r Record) {
	q.mu.Lock()
	i, found := slices.BinarySearchFunc(q.pend, r.Pos, func(p pending, x Pos) int {
		switch {
		case p.pos.less(x):
			return -1
		case x.less(p.pos):
			return 1
		}
		return 0
	})
	if !found || q.pend[i].done {
		q.mu.Unlock()
		return
	}
	q.pend[i].done = true
	q.advanceLocked()
	q.checkpointUnlock()
}

// InFlight returns how many records were read and not yet acknowledged
// (finished beyond the prefix included).
func (q *Queue) InFlight() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pend)
}

// advanceLocked acknowledges the finished records at the head of pend.
func (q *Queue) advanceLocked() {
	i := 0
	for ; i < len(q.pend) && q.pend[i].done; i++ {
		p := q.pend[i]
		for _, s := range q.segs {
			if s.seq == p.pos.Seg {
				s.acked.records++
				s.acked.samples += p.samples
				break
			}
		}
		q.unacked.records--
		q.unacked.samples -= p.samples
		q.m.ackedRecords.Inc()
		if q.ack.less(p.pos) {
			q.ack = p.pos
		}
	}
	if i > 0 {
		q.pend = q.pend[:copy(q.pend, q.pend[i:])]
		q.trimAckedLocked()
	}
	q.updateGaugesLocked()
}

// snapshotLocked puts the acknowledgement state to checkpoint into c
// (reusing its list), with the next generation.
func (q *Queue) snapshotLocked(c *checkpoint) {
	q.ckGen++
	c.gen, c.ack, c.done = q.ckGen, q.ack, c.done[:0]
	for _, p := range q.pend {
		if p.done {
			c.done = append(c.done, p.pos)
		}
	}
	for _, p := range q.preDone {
		if q.ack.less(p) {
			c.done = append(c.done, p)
		}
	}
}

// checkpointUnlock writes the acknowledgement state into the checkpoint
// file (no fsync: Sync does that) and releases q.mu. A pwrite of a few
// bytes per acknowledgement is what makes a killed process re-send only
// the records still in flight.
func (q *Queue) checkpointUnlock() {
	if q.isClosed || q.ckRenew {
		q.mu.Unlock()
		return
	}
	q.ckMu.Lock()
	q.snapshotLocked(&q.ckSnap)
	q.mu.Unlock()
	defer q.ckMu.Unlock()
	if q.ckBroken {
		return // Sync re-creates the file
	}
	if err := writeSlot(q.ckFile, &q.ckSnap, q.ckBuf[:]); err != nil {
		q.ckBroken = true
		q.logger.Error("disk queue checkpoint write failed; re-created on the next sync", "err", err)
		return
	}
	q.ckUnsynced = true
}

// trimAckedLocked deletes the sealed segments at the head that are
// acknowledged to their end.
func (q *Queue) trimAckedLocked() {
	for len(q.segs) > 0 {
		s := q.segs[0]
		if s == q.wseg || s.seq > q.ack.Seg || s.seq == q.ack.Seg && q.ack.Off < s.size {
			return
		}
		q.removeAckedLocked(s)
	}
}

func (q *Queue) removeAckedLocked(s *segment) {
	if err := os.Remove(q.segPath(s.seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		q.logger.Error("remove acknowledged segment", "segment", s.seq, "err", err)
	}
	q.dirDirty = true
	q.forgetLocked(s)
}

func (q *Queue) syncLoop() {
	defer close(q.syncDone)
	t := time.NewTicker(q.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-q.closed:
			return
		case <-t.C:
			if err := q.Sync(); err != nil {
				q.logger.Error("disk queue sync failed", "err", err)
			}
		}
	}
}

// Sync makes everything appended so far durable and checkpoints the read
// position; it also notices a removed or replaced directory. The sync loop
// calls it every SyncInterval; call it on graceful shutdown after the last
// Append.
func (q *Queue) Sync() error {
	q.syncMu.Lock()
	defer q.syncMu.Unlock()
	q.mu.Lock()
	if ino, err := inode(q.opts.Dir); (err != nil || ino != q.dirIno) && !q.isClosed && (q.w != nil || len(q.segs) > 0) {
		q.dirRemovedLocked(err)
	}
	f, dirty := q.w, q.dirty
	toClose, dirDirty := q.toClose, q.dirDirty
	q.toClose, q.dirty, q.dirDirty = nil, false, false
	q.mu.Unlock()

	start := time.Now()
	var errs []error
	for _, c := range toClose {
		if err := c.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("fsync %s: %w", c.Name(), err))
		}
		c.Close()
	}
	if f != nil && dirty {
		if err := datasync(f); err != nil && !errors.Is(err, fs.ErrClosed) {
			errs = append(errs, fmt.Errorf("fsync %s: %w", f.Name(), err))
		}
	}
	if dirDirty {
		if err := syncDir(q.opts.Dir); err != nil {
			errs = append(errs, fmt.Errorf("fsync directory: %w", err))
		}
	}
	if err := q.syncCheckpoint(); err != nil {
		errs = append(errs, fmt.Errorf("checkpoint: %w", err))
	}
	q.m.fsync.Observe(time.Since(start).Seconds())
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
	}
	return nil
}

// syncCheckpoint fsyncs the checkpoint file, or re-creates it (atomically)
// after a failed write or once a removed directory was re-created.
func (q *Queue) syncCheckpoint() error {
	q.mu.Lock()
	if q.ckRenew && q.w == nil {
		q.mu.Unlock()
		return nil // the directory is gone; the next Append re-creates it
	}
	q.ckMu.Lock()
	if q.ckRenew || q.ckBroken {
		q.snapshotLocked(&q.ckSnap)
		q.ckRenew = false
		q.mu.Unlock()
		defer q.ckMu.Unlock()
		f, err := createCheckpoint(q.opts.Dir, &q.ckSnap)
		if err != nil {
			q.ckBroken = true
			return err
		}
		if q.ckFile != nil {
			q.ckFile.Close()
		}
		q.ckFile, q.ckBroken, q.ckUnsynced = f, false, false
		return nil
	}
	q.mu.Unlock()
	f, unsynced := q.ckFile, q.ckUnsynced
	q.ckUnsynced = false
	q.ckMu.Unlock()
	if !unsynced {
		return nil
	}
	// Not under ckMu: writes into the file may go on meanwhile; only Sync
	// (under syncMu) replaces or closes it.
	if err := datasync(f); err != nil {
		q.ckMu.Lock()
		q.ckUnsynced = true
		q.ckMu.Unlock()
		return err
	}
	return nil
}

// dirRemovedLocked handles a directory removed or replaced under the
// queue: what was in it is gone (counted, reason "removed"), and the
// directory is re-created on the next Append.
func (q *Queue) dirRemovedLocked(statErr error) {
	q.logger.Error("disk queue directory removed or replaced; its records are lost", "err", statErr, "records", q.unacked.records, "bytes", q.bytes)
	for len(q.segs) > 0 {
		s := q.segs[0]
		if s == q.wseg {
			q.sealLocked()
		}
		unread := tally{s.total.records - s.read.records, s.total.samples - s.read.samples}
		q.m.droppedRecords.WithLabelValues(reasonRemoved).Add(float64(unread.records))
		q.m.droppedSamples.WithLabelValues(reasonRemoved).Add(float64(unread.samples))
		q.m.droppedBytes.WithLabelValues(reasonRemoved).Add(float64(s.size))
		q.forgetLocked(s)
	}
	q.pend = q.pend[:0]
	q.preDone = nil
	q.ckRenew = true
	q.m.appendErrors.WithLabelValues("removed").Inc()
	q.broken = unavailable("directory", fmt.Errorf("%s removed or replaced", q.opts.Dir))
	q.lastRetry = time.Time{} // re-create on the next Append
	q.dirDirty = false
}

// Close syncs and closes the queue; Next and Append then fail with
// ErrClosed.
func (q *Queue) Close() error {
	var err error
	q.closeOnce.Do(func() {
		close(q.closed)
		<-q.syncDone
		err = q.Sync()
		q.mu.Lock()
		q.isClosed = true
		q.kept, q.keptBytes = nil, 0
		if q.w != nil {
			q.w.Close()
			q.w = nil
		}
		q.mu.Unlock()
		q.readMu.Lock()
		q.closeReadFile()
		q.readMu.Unlock()
		q.ckMu.Lock()
		if q.ckFile != nil {
			if q.ckUnsynced { // a Done between the Sync above and isClosed
				_ = q.ckFile.Sync()
			}
			q.ckFile.Close()
		}
		q.ckMu.Unlock()
		q.lock.Close()
	})
	return err
}

// Len returns the records on disk not yet acknowledged and their samples.
func (q *Queue) Len() (records, samples int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.unacked.records, q.unacked.samples
}
