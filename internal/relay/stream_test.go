package relay

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
)

// choppyReader returns its payload in reads of random sizes, as a TLS
// connection does (a record at a time), sometimes a single byte.
type choppyReader struct {
	b   []byte
	rng *rand.Rand
}

func (r *choppyReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.b), 1+r.rng.IntN(40000))
	if r.rng.IntN(10) == 0 {
		n = 1
	}
	n = copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

// render is everything a result shows: the view as text, then the samples
// sent, with their labels.
func render(t *testing.T, res *Result) string {
	t.Helper()
	var sb strings.Builder
	if err := view.WriteText(&sb, []*view.TargetView{res.View}, nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Send {
		sb.Write(enrich.AppendSampleLine(nil, s.Table, s.Ref, s.T, s.V, true))
	}
	return sb.String()
}

// TestProcessStreamMatchesProcess: parsing a payload as it arrives, cut
// anywhere, gives exactly what parsing it whole gives, scrape after scrape
// (prediction, staleness and relabelling included), and the same errors.
func TestProcessStreamMatchesProcess(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	long := "m{a=\"" + strings.Repeat("x", 600<<10) + "\"} 1\n" // longer than the stream buffer
	for _, name := range captures {
		body := readCapture(t, name)
		bodies := [][]byte{body, body, bytes.TrimSuffix(body, []byte("\n")), append([]byte(long), body...), body[:len(body)/2]}
		whole, streamed := NewTargetCache(testTarget(), true), NewTargetCache(testTarget(), true)
		var buf []byte
		for i, b := range bodies {
			ix := testIndex(uint64(1+i/3), baseTeams)
			if i >= 3 {
				ix = testIndex(uint64(1+i/3), map[string]string{"kube-system": "sre", "default": "frontend"})
			}
			now := scrapeTime.Add(time.Duration(i) * time.Minute)
			want := whole.Process(append([]byte(nil), b...), "", now, 0, ix, nil)
			var got *Result
			got, buf = streamed.ProcessStream(&choppyReader{b: append([]byte(nil), b...), rng: rng}, now, ix, buf)
			got.Duration, want.Duration = 0, 0
			var pe1, pe2 *ParseError
			if errors.As(want.Err, &pe1) != errors.As(got.Err, &pe2) || (pe1 != nil && pe1.Line != pe2.Line) {
				t.Fatalf("%s, payload %d: errors differ: whole %v, streamed %v", name, i, want.Err, got.Err)
			}
			// The duration sample differs (it is measured): compare the rest.
			w, g := render(t, want), render(t, got)
			w = dropDuration(w)
			g = dropDuration(g)
			if w != g {
				t.Fatalf("%s, payload %d: streamed result differs from the whole one (%d vs %d bytes)", name, i, len(g), len(w))
			}
		}
	}
}

func dropDuration(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "scrape_duration_seconds") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestProcessStreamReadErrorFailsTheScrape(t *testing.T) {
	body := readCapture(t, captures[0])
	c := NewTargetCache(testTarget(), true)
	first, _ := c.ProcessStream(bytes.NewReader(body), scrapeTime, testIndex(1, baseTeams), nil)
	if first.Err != nil {
		t.Fatal(first.Err)
	}
	cut := io.MultiReader(bytes.NewReader(body[:len(body)/2]), iotestErrReader{errors.New("connection reset")})
	res, _ := c.ProcessStream(cut, scrapeTime.Add(time.Minute), testIndex(1, baseTeams), nil)
	if res.Err == nil || res.Stale != first.Scraped {
		t.Fatalf("a payload cut off: err %v, %d stale markers, want an error and %d", res.Err, res.Stale, first.Scraped)
	}
	for _, s := range res.Send {
		if !isSelf(c, s.Ref) && s.T != scrapeTime.Add(time.Minute).UnixMilli() {
			t.Fatal("a sample of the cut payload was sent")
		}
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }
