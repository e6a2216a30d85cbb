package loadbench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/value"
)

// Receiver is a Prometheus remote-write 1.0 endpoint on 127.0.0.1 that decodes every
// request (snappy, then the protobuf WriteRequest walked field by field without building
// objects), counts samples, series and wire bytes, and checks that every series'
// timestamps increase. It answers 204, or 400 for a request it cannot decode.
//
// Requests are handled concurrently: reading, snappy and the protobuf walk happen outside
// the lock, each request in its own pooled buffers; only merging the counts and the
// per-series order check (one map update per series) take the lock. The relay's shards
// send each series from one shard, one request at a time, so the order check stays exact.
type Receiver struct {
	URL string // http://127.0.0.1:port/api/v1/write

	srv  *http.Server
	mu   sync.Mutex
	last map[uint64]int64 // series hash -> last timestamp
	st   ReceiverStats
	pool sync.Pool // *recvScratch
	hint int       // series expected, for Reset
	down atomic.Bool
}

// recvScratch is one request's buffers and what it found, merged under the lock.
type recvScratch struct {
	raw, dec []byte
	series   []seriesSeen
	st       ReceiverStats // Samples, StaleMarkers, WithLabel, NotIncreasing (within the request)
}

// seriesSeen is one TimeSeries of a request: its hash and first and last timestamps.
type seriesSeen struct {
	key         uint64
	first, last int64
}

// ReceiverStats are the receiver's counters.
type ReceiverStats struct {
	Requests     int64
	BadRequests  int64 // not snappy, not a WriteRequest
	WireBytes    int64 // request bodies as received (snappy-compressed)
	DecodedBytes int64 // after snappy
	Samples      int64 // including stale markers
	StaleMarkers int64
	// NotIncreasing counts samples whose timestamp was not after the series' previous one.
	NotIncreasing int64
	// WithLabel counts samples of series that carry the label Receiver.Label (team).
	WithLabel int64
	// Series is how many distinct series were seen.
	Series int64
	// Refused counts requests answered 503 while SetDown(true).
	Refused int64
	// First and Last are when the first and the latest request arrived.
	First, Last time.Time
}

// Label is the label whose presence the receiver counts (WithLabel).
const Label = "team"

// StartReceiver listens on a free 127.0.0.1 port.
func StartReceiver() (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Receiver{URL: "http://" + ln.Addr().String() + "/api/v1/write", last: map[uint64]int64{}}
	r.pool.New = func() any { return &recvScratch{} }
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// Stop closes the server.
func (r *Receiver) Stop() { _ = r.srv.Close() }

// Stats returns a copy of the counters.
func (r *Receiver) Stats() ReceiverStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.st
	s.Series = int64(len(r.last))
	return s
}

// Presize makes Reset allocate room for n series, so that the first round does not grow
// the map (under the lock) while the relay waits.
func (r *Receiver) Presize(n int) {
	r.mu.Lock()
	r.hint = n
	r.mu.Unlock()
}

// Reset forgets every series and zeroes the counters.
func (r *Receiver) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = make(map[uint64]int64, r.hint)
	r.st = ReceiverStats{}
}

var teamName = []byte(Label)

var errWire = errors.New("malformed protobuf")

func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if r.down.Load() {
		_, _ = io.Copy(io.Discard, req.Body)
		r.mu.Lock()
		r.st.Refused++
		r.mu.Unlock()
		http.Error(w, "receiver down (loadbench -receiver-outage)", http.StatusServiceUnavailable)
		return
	}
	sc := r.pool.Get().(*recvScratch)
	defer r.pool.Put(sc)
	buf := bytes.NewBuffer(sc.raw[:0])
	_, err := io.Copy(buf, req.Body)
	sc.raw = buf.Bytes()
	var dec []byte
	if err == nil {
		dec, err = snappy.Decode(sc.dec[:cap(sc.dec)], sc.raw)
		if err != nil {
			err = fmt.Errorf("snappy: %w", err)
		} else {
			sc.dec = dec
		}
	}
	sc.series, sc.st = sc.series[:0], ReceiverStats{}
	if err == nil {
		if err = sc.walk(dec); err != nil {
			err = fmt.Errorf("prompb: %w", err)
		}
	}
	now := time.Now()
	r.mu.Lock()
	if r.st.First.IsZero() {
		r.st.First = now
	}
	r.st.Last = now
	r.st.Requests++
	r.st.WireBytes += int64(len(sc.raw))
	if err != nil {
		r.st.BadRequests++
		if r.st.BadRequests <= 3 {
			// Keep the evidence: the body and why it was refused.
			if dir := os.Getenv("LOADBENCH_BAD_DIR"); dir != "" {
				name := filepath.Join(dir, fmt.Sprintf("bad-request-%d", r.st.BadRequests))
				_ = os.WriteFile(name+".snappy", sc.raw, 0o644)
				_ = os.WriteFile(name+".txt", []byte(err.Error()+"\n"), 0o644)
			}
		}
		r.mu.Unlock()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.st.DecodedBytes += int64(len(dec))
	r.st.Samples += sc.st.Samples
	r.st.StaleMarkers += sc.st.StaleMarkers
	r.st.WithLabel += sc.st.WithLabel
	r.st.NotIncreasing += sc.st.NotIncreasing
	for _, s := range sc.series {
		if prev, ok := r.last[s.key]; ok && s.first <= prev {
			r.st.NotIncreasing++
		}
		r.last[s.key] = s.last
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// walk reads a WriteRequest (field 1: TimeSeries; others skipped) into sc.
func (sc *recvScratch) walk(b []byte) error {
	for len(b) > 0 {
		num, typ, v, rest, err := field(b)
		if err != nil {
			return err
		}
		b = rest
		if num == 1 && typ == 2 {
			if err := sc.series1(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// series1 reads one TimeSeries: labels (1: name 1, value 2) hashed as before
// (name 0xff value 0xfe), samples (2: value 1 double, timestamp 2 varint).
func (sc *recvScratch) series1(b []byte) error {
	var h xxhash.Digest
	h.Reset()
	team := false
	s := seriesSeen{}
	n := int64(0)
	for len(b) > 0 {
		num, typ, v, rest, err := field(b)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case num == 1 && typ == 2: // Label
			var name, val []byte
			for len(v) > 0 {
				ln, lt, lv, lrest, err := field(v)
				if err != nil {
					return err
				}
				v = lrest
				if lt == 2 && ln == 1 {
					name = lv
				} else if lt == 2 && ln == 2 {
					val = lv
				}
			}
			_, _ = h.Write(name)
			_, _ = h.Write([]byte{0xff})
			_, _ = h.Write(val)
			_, _ = h.Write([]byte{0xfe})
			if bytes.Equal(name, teamName) {
				team = true
			}
		case num == 2 && typ == 2: // Sample
			var val uint64
			var ts int64
			for len(v) > 0 {
				sn, st, sv, srest, err := field(v)
				if err != nil {
					return err
				}
				v = srest
				switch {
				case sn == 1 && st == 1:
					val = binary.LittleEndian.Uint64(sv)
				case sn == 2 && st == 0:
					u, _ := binary.Uvarint(sv)
					ts = int64(u)
				}
			}
			if n > 0 && ts <= s.last {
				sc.st.NotIncreasing++
			}
			if n == 0 {
				s.first = ts
			}
			s.last = ts
			n++
			if value.IsStaleNaN(math.Float64frombits(val)) {
				sc.st.StaleMarkers++
			}
		}
	}
	sc.st.Samples += n
	if team {
		sc.st.WithLabel += n
	}
	if n > 0 {
		s.key = h.Sum64()
		sc.series = append(sc.series, s)
	}
	return nil
}

// field splits the next protobuf field off b: its number, wire type and payload (the
// varint's bytes for type 0, 8 bytes for 1, the contents for 2, 4 bytes for 5).
func field(b []byte) (num uint64, typ int, v, rest []byte, err error) {
	tag, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, nil, nil, errWire
	}
	b = b[n:]
	num, typ = tag>>3, int(tag&7)
	switch typ {
	case 0:
		_, n = binary.Uvarint(b)
		if n <= 0 {
			return 0, 0, nil, nil, errWire
		}
		return num, typ, b[:n], b[n:], nil
	case 1:
		if len(b) < 8 {
			return 0, 0, nil, nil, errWire
		}
		return num, typ, b[:8], b[8:], nil
	case 2:
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return 0, 0, nil, nil, errWire
		}
		return num, typ, b[n : n+int(l)], b[n+int(l):], nil
	case 5:
		if len(b) < 4 {
			return 0, 0, nil, nil, errWire
		}
		return num, typ, b[:4], b[4:], nil
	}
	return 0, 0, nil, nil, errWire
}

// String is a one-line summary.
func (s ReceiverStats) String() string {
	return fmt.Sprintf("%d requests (%d bad), %d samples (%d stale markers, %d not increasing, %d with %s), %d series, %d wire bytes",
		s.Requests, s.BadRequests, s.Samples, s.StaleMarkers, s.NotIncreasing, s.WithLabel, Label, s.Series, s.WireBytes)
}
