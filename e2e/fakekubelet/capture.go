// Package fakekubelet serves real kubelet captures like a kubelet does: over HTTPS, with
// kubelet-style authentication (client certificate or bearer token checked by TokenReview)
// and authorization (SubjectAccessReview), with the sample timestamps moved to the present and
// the capture's pods spread over the namespaces of the test bed.
package fakekubelet

import (
	"bytes"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/captures"

	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"
)

// Captures names the captures served, by short name (internal/captures.Files).
var Captures = captures.Files

// ReadCapture returns the bytes of a capture by short name (see Captures and
// captures.Generated).
func ReadCapture(name string) ([]byte, error) {
	_, real := Captures[name]
	_, gen := captures.Generated[name]
	if !real && !gen {
		return nil, fmt.Errorf("unknown capture %q", name)
	}
	return captures.Read(name)
}

// RewriteOptions says how a capture is rewritten.
type RewriteOptions struct {
	// Namespaces receive the capture's pods, round robin over the capture's (namespace, pod)
	// pairs in sorted order. Empty keeps the capture's namespaces.
	Namespaces []string
	// Offset rotates the round robin, so several nodes serving one capture put different
	// pods into each namespace.
	Offset int
	// PodNamespaces, when set, fixes the namespace of the "namespace/pod" keys it holds
	// (another endpoint's Capture.PodNamespaces), so every endpoint of one node puts a
	// pod in the same namespace; pods it lacks go round robin.
	PodNamespaces map[string]string
}

type mark struct {
	off int   // position in Capture.static where " <timestamp>" goes
	ts  int64 // the capture's timestamp in ms
}

// Capture is a pre-processed exposition: the rewritten text with the timestamps cut out,
// so that writing it for a scrape only formats the timestamps.
type Capture struct {
	static []byte
	marks  []mark
	maxTS  int64
	hasTS  bool
	// PodNamespaces maps "namespace/pod" of the capture to the namespace it is served in.
	PodNamespaces map[string]string
	// Series is the number of sample lines.
	Series int
}

// Prepare parses a text exposition and returns it ready to serve.
func Prepare(data []byte, opt RewriteOptions) (*Capture, error) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	type parsed struct {
		line     []byte
		ns, pod  span // value spans in line; ns.ok false if absent
		valueEnd int  // end of "name{labels} value"
		ts       int64
		hasTS    bool
		sample   bool
	}
	ps := make([]parsed, 0, len(lines))
	pods := map[string]bool{}
	for i, l := range lines {
		p := parsed{line: l}
		body := bytes.TrimRight(l, "\r\n")
		if len(body) == 0 || body[0] == '#' {
			ps = append(ps, p)
			continue
		}
		p.sample = true
		lab, rest, err := splitSample(body)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		if lab.ok {
			p.ns, p.pod, err = findPodLabels(body, lab)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
		}
		// rest: " value" or " value timestamp"
		fields := bytes.Fields(body[rest:])
		switch len(fields) {
		case 1:
			p.valueEnd = len(body)
		case 2:
			ts, err := strconv.ParseInt(string(fields[1]), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: bad timestamp %q", i+1, fields[1])
			}
			p.ts, p.hasTS = ts, true
			p.valueEnd = bytes.LastIndex(body, fields[1])
			for p.valueEnd > 0 && (body[p.valueEnd-1] == ' ' || body[p.valueEnd-1] == '\t') {
				p.valueEnd--
			}
		default:
			return nil, fmt.Errorf("line %d: want value [timestamp], got %q", i+1, body[rest:])
		}
		if p.ns.ok && p.pod.ok && p.pod.len() > 0 && p.ns.len() > 0 {
			pods[string(body[p.ns.from:p.ns.to])+"/"+string(body[p.pod.from:p.pod.to])] = true
		}
		ps = append(ps, p)
	}

	keys := make([]string, 0, len(pods))
	for k := range pods {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	podNS := make(map[string]string, len(keys))
	for i, k := range keys {
		if ns, ok := opt.PodNamespaces[k]; ok {
			podNS[k] = ns
			continue
		}
		if len(opt.Namespaces) == 0 {
			podNS[k] = k[:bytes.IndexByte([]byte(k), '/')]
			continue
		}
		podNS[k] = opt.Namespaces[(i+opt.Offset)%len(opt.Namespaces)]
	}

	c := &Capture{PodNamespaces: podNS, maxTS: math.MinInt64}
	c.static = make([]byte, 0, len(data)+len(data)/8)
	for _, p := range ps {
		if !p.sample {
			c.static = append(c.static, p.line...)
			continue
		}
		c.Series++
		body := p.line[:p.valueEnd]
		if p.ns.ok && p.pod.ok && p.pod.len() > 0 && p.ns.len() > 0 {
			k := string(body[p.ns.from:p.ns.to]) + "/" + string(body[p.pod.from:p.pod.to])
			c.static = append(c.static, body[:p.ns.from]...)
			c.static = append(c.static, podNS[k]...)
			c.static = append(c.static, body[p.ns.to:]...)
		} else {
			c.static = append(c.static, body...)
		}
		if p.hasTS {
			c.marks = append(c.marks, mark{off: len(c.static), ts: p.ts})
			c.hasTS = true
			c.maxTS = max(c.maxTS, p.ts)
		}
		c.static = append(c.static, '\n')
	}
	return c, nil
}

// Shift returns how many ms the capture's timestamps move for a scrape at now: the capture's
// newest timestamp becomes now.
func (c *Capture) Shift(now time.Time) int64 {
	if !c.hasTS {
		return 0
	}
	return now.UnixMilli() - c.maxTS
}

// AppendTo appends the exposition for a scrape at now to buf.
func (c *Capture) AppendTo(buf []byte, now time.Time) []byte {
	shift := c.Shift(now)
	prev := 0
	for _, m := range c.marks {
		buf = append(buf, c.static[prev:m.off]...)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, m.ts+shift, 10)
		prev = m.off
	}
	return append(buf, c.static[prev:]...)
}

// WriteTo writes the exposition for a scrape at now.
func (c *Capture) WriteTo(w io.Writer, now time.Time) (int64, error) {
	n, err := w.Write(c.AppendTo(make([]byte, 0, len(c.static)+len(c.marks)*16), now))
	return int64(n), err
}

// Size is about the number of bytes of one scrape.
func (c *Capture) Size() int { return len(c.static) + len(c.marks)*14 }

type span struct {
	from, to int
	ok       bool
}

func (s span) len() int { return s.to - s.from }

// splitSample returns the span of the label block's inside (without braces; ok false if the
// line has none) and where the value part starts.
func splitSample(line []byte) (labels span, rest int, err error) {
	i := 0
	for i < len(line) && line[i] != '{' && line[i] != ' ' && line[i] != '\t' {
		i++
	}
	if i == len(line) {
		return span{}, 0, fmt.Errorf("no value in %q", line)
	}
	if line[i] != '{' {
		return span{}, i, nil
	}
	start := i + 1
	inQuote := false
	for j := start; j < len(line); j++ {
		switch c := line[j]; {
		case inQuote && c == '\\':
			j++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '}':
			return span{from: start, to: j, ok: true}, j + 1, nil
		}
	}
	return span{}, 0, fmt.Errorf("unterminated label block in %q", line)
}

// findPodLabels finds the value spans of the namespace label and of the pod label (pod, or
// the pre-1.16 pod_name).
func findPodLabels(line []byte, lab span) (ns, pod span, err error) {
	i := lab.from
	for i < lab.to {
		for i < lab.to && (line[i] == ',' || line[i] == ' ') {
			i++
		}
		if i >= lab.to {
			break
		}
		eq := bytes.IndexByte(line[i:lab.to], '=')
		if eq < 0 {
			return ns, pod, fmt.Errorf("bad label block %q", line[lab.from:lab.to])
		}
		name := string(bytes.TrimSpace(line[i : i+eq]))
		j := i + eq + 1
		if j >= lab.to || line[j] != '"' {
			return ns, pod, fmt.Errorf("bad label value in %q", line[lab.from:lab.to])
		}
		vs := j + 1
		k := vs
		for ; k < lab.to && line[k] != '"'; k++ {
			if line[k] == '\\' {
				k++
			}
		}
		v := span{from: vs, to: k, ok: true}
		switch name {
		case "namespace":
			ns = v
		case "pod":
			pod = v
		case "pod_name":
			if !pod.ok {
				pod = v
			}
		}
		i = k + 1
	}
	return ns, pod, nil
}
