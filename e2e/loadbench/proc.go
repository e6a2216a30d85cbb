package loadbench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// clkTck is USER_HZ, the unit of utime/stime in /proc/PID/stat (100 on Linux).
const clkTck = 100

// ProcCPU returns the process's user+system CPU time (all threads) from /proc/PID/stat.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return time.Duration(u+s) * time.Second / clkTck, nil
}

// ProcMem returns VmRSS and VmHWM (peak RSS) in bytes from /proc/PID/status.
func ProcMem(pid int) (rss, hwm int64, err error) {
	v, err := procStatus(pid, "VmRSS", "VmHWM")
	return v[0], v[1], err
}

// ProcRssSplit returns RssAnon and RssFile in bytes from /proc/PID/status.
func ProcRssSplit(pid int) (anon, file int64, err error) {
	v, err := procStatus(pid, "RssAnon", "RssFile")
	return v[0], v[1], err
}

// procStatus returns the given "NAME: N kB" fields of /proc/PID/status in bytes, in the
// order asked (0 for a field the kernel does not report).
func procStatus(pid int, keys ...string) ([]int64, error) {
	out := make([]int64, len(keys))
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		i := slices.Index(keys, k)
		if i < 0 {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return out, fmt.Errorf("/proc/%d/status: %s", pid, l)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return out, fmt.Errorf("/proc/%d/status: %s: %w", pid, l, err)
		}
		out[i] = n << 10
	}
	return out, nil
}

// rssSampler reads VmRSS every period until stopped and keeps the largest value and the mean.
type rssSampler struct {
	mu     sync.Mutex
	max    int64
	sum    int64
	n      int64
	cancel context.CancelFunc
	done   chan struct{}
}

func sampleRSS(pid int, period time.Duration) *rssSampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &rssSampler{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			if rss, _, err := ProcMem(pid); err == nil {
				s.mu.Lock()
				s.max = max(s.max, rss)
				s.sum += rss
				s.n++
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// reset starts a new measurement window.
func (s *rssSampler) reset() {
	s.mu.Lock()
	s.max, s.sum, s.n = 0, 0, 0
	s.mu.Unlock()
}

func (s *rssSampler) stats() (maxRSS, meanRSS int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == 0 {
		return s.max, 0
	}
	return s.max, s.sum / s.n
}

func (s *rssSampler) stop() { s.cancel(); <-s.done }

// SelfMetrics are the relay's /metrics/self, flattened: the sum over every series of a name
// (histograms as NAME_count and NAME_sum), and for a few labelled counters and histograms
// also NAME/VALUE (NAME_count/VALUE, NAME_sum/VALUE) by their one distinguishing label
// (result, reason, code).
type SelfMetrics map[string]float64

// Get returns a value (0 if absent).
func (m SelfMetrics) Get(name string) float64 { return m[name] }

var splitLabels = []string{"result", "reason", "code"}

// ParseSelf parses a text exposition into SelfMetrics.
func ParseSelf(r io.Reader) (SelfMetrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	m := SelfMetrics{}
	for name, f := range fams {
		for _, mt := range f.Metric {
			var v float64
			switch {
			case mt.Counter != nil:
				v = mt.Counter.GetValue()
			case mt.Gauge != nil:
				v = mt.Gauge.GetValue()
			case mt.Untyped != nil:
				v = mt.Untyped.GetValue()
			case mt.Histogram != nil:
				m[name+"_count"] += float64(mt.Histogram.GetSampleCount())
				m[name+"_sum"] += mt.Histogram.GetSampleSum()
				for _, l := range mt.Label {
					if labelIn(l, splitLabels) {
						m[name+"_count/"+l.GetValue()] += float64(mt.Histogram.GetSampleCount())
						m[name+"_sum/"+l.GetValue()] += mt.Histogram.GetSampleSum()
					}
				}
				continue
			case mt.Summary != nil:
				m[name+"_count"] += float64(mt.Summary.GetSampleCount())
				m[name+"_sum"] += mt.Summary.GetSampleSum()
				continue
			}
			m[name] += v
			for _, l := range mt.Label {
				if labelIn(l, splitLabels) {
					m[name+"/"+l.GetValue()] += v
				}
			}
		}
	}
	return m, nil
}

func labelIn(l *dto.LabelPair, names []string) bool {
	for _, n := range names {
		if l.GetName() == n {
			return true
		}
	}
	return false
}

var plainClient = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{Proxy: nil}}

// fetchSelf GETs the relay's /metrics/self.
func fetchSelf(ctx context.Context, base string) (SelfMetrics, error) {
	return fetchMetrics(ctx, base+"/metrics/self")
}

// fetchMetrics GETs a Prometheus text exposition (the relay's /metrics/self, vmagent's
// /metrics) as SelfMetrics.
func fetchMetrics(ctx context.Context, url string) (SelfMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := plainClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return ParseSelf(resp.Body)
}

// keysWith lists the keys of m with a prefix, sorted (for reports).
func (m SelfMetrics) keysWith(prefix string) []string {
	var ks []string
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	return ks
}
