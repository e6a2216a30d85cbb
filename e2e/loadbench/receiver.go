package loadbench

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
)

// Receiver is a Prometheus remote-write 1.0 endpoint on 127.0.0.1 that decodes every
// request (snappy, prompb), counts samples, series and wire bytes, and checks that every
// series' timestamps increase. It answers 204, or 400 for a request it cannot decode.
type Receiver struct {
	URL string // http://127.0.0.1:port/api/v1/write

	srv  *http.Server
	mu   sync.Mutex
	last map[uint64]int64 // series hash -> last timestamp
	st   ReceiverStats
	req  prompb.WriteRequest
	raw  []byte
	dec  []byte
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

// Reset forgets every series and zeroes the counters.
func (r *Receiver) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = map[uint64]int64{}
	r.st = ReceiverStats{}
}

var teamName = []byte(Label)

func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	// One request at a time: the counts and the per-series order check stay exact, and the
	// receiver's CPU is not the relay's anyway.
	r.mu.Lock()
	defer r.mu.Unlock()
	buf := bytes.NewBuffer(r.raw[:0])
	if _, err := io.Copy(buf, req.Body); err != nil {
		r.st.BadRequests++
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.raw = buf.Bytes()
	now := time.Now()
	if r.st.First.IsZero() {
		r.st.First = now
	}
	r.st.Last = now
	r.st.Requests++
	r.st.WireBytes += int64(len(r.raw))
	dec, err := snappy.Decode(r.dec[:cap(r.dec)], r.raw)
	if err != nil {
		r.st.BadRequests++
		http.Error(w, "snappy: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.dec = dec
	r.st.DecodedBytes += int64(len(dec))
	r.req.Reset()
	if err := r.req.Unmarshal(dec); err != nil {
		r.st.BadRequests++
		http.Error(w, "prompb: "+err.Error(), http.StatusBadRequest)
		return
	}
	var h xxhash.Digest
	for _, ts := range r.req.Timeseries {
		h.Reset()
		team := false
		for _, l := range ts.Labels {
			_, _ = h.WriteString(l.Name)
			_, _ = h.Write([]byte{0xff})
			_, _ = h.WriteString(l.Value)
			_, _ = h.Write([]byte{0xfe})
			if l.Name == string(teamName) {
				team = true
			}
		}
		key := h.Sum64()
		prev, seen := r.last[key]
		for _, s := range ts.Samples {
			r.st.Samples++
			if team {
				r.st.WithLabel++
			}
			if value.IsStaleNaN(s.Value) {
				r.st.StaleMarkers++
			}
			if seen && s.Timestamp <= prev {
				r.st.NotIncreasing++
			}
			prev, seen = s.Timestamp, true
		}
		if seen {
			r.last[key] = prev
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// String is a one-line summary.
func (s ReceiverStats) String() string {
	return fmt.Sprintf("%d requests (%d bad), %d samples (%d stale markers, %d not increasing, %d with %s), %d series, %d wire bytes",
		s.Requests, s.BadRequests, s.Samples, s.StaleMarkers, s.NotIncreasing, s.WithLabel, Label, s.Series, s.WireBytes)
}
