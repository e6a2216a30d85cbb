package loadbench

import (
	"bytes"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func mustTemplate(t testing.TB) *Template {
	t.Helper()
	tpl, err := LoadTemplate()
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

// TestNodeShape: WORKLOAD.md's numbers for a 30-pod node (6.0k-6.8k series, ~1.9-2.2 MB,
// ~650 node-level series, one netif per pod, most lines timestamped: WORKLOAD.md's ~92% counts
// the capture's 10 netifs per pod, all timestamped; with eth0 only it is ~88%), and the text
// parses with expfmt.
func TestNodeShape(t *testing.T) {
	tpl := mustTemplate(t)
	w := DefaultWorkload(20)
	for i := range w.Nodes {
		n := tpl.GenerateNode(w, i)
		if n.Series < 6000 || n.Series > 6800 {
			t.Errorf("%s: %d series, want 6.0k-6.8k (WORKLOAD.md, 30 pods)", n.Name, n.Series)
		}
		if len(n.Text) < 1_700_000 || len(n.Text) > 2_400_000 {
			t.Errorf("%s: %d bytes, want about 1.9-2.2 MB", n.Name, len(n.Text))
		}
		if len(n.Pods) != 30 {
			t.Errorf("%s: %d pods, want 30", n.Name, len(n.Pods))
		}
		ks := 0
		for _, p := range n.Pods {
			if p.Namespace == "kube-system" {
				ks++
			}
		}
		if ks < 5 || ks > 8 {
			t.Errorf("%s: %d kube-system pods, want 5-8", n.Name, ks)
		}
		var nodeLevel, ts, lines int
		for _, l := range bytes.Split(n.Text, []byte("\n")) {
			if len(l) == 0 || l[0] == '#' {
				continue
			}
			lines++
			if labelValue(l, "pod") == "" {
				nodeLevel++
			} else if ifc := labelValue(l, "interface"); ifc != "" && ifc != "eth0" {
				t.Fatalf("%s: pod line with interface %s: %s", n.Name, ifc, l)
			}
			if f := bytes.Fields(l[bytes.LastIndexByte(l, '}')+1:]); len(f) == 2 {
				ts++
			}
		}
		if lines != n.Series {
			t.Errorf("%s: Series %d, counted %d", n.Name, n.Series, lines)
		}
		if nodeLevel < 600 || nodeLevel > 700 {
			t.Errorf("%s: %d node-level series, want ~650", n.Name, nodeLevel)
		}
		if frac := float64(ts) / float64(lines); frac < 0.85 || frac > 0.95 {
			t.Errorf("%s: %.3f of lines timestamped, want ~0.88", n.Name, frac)
		}
		if i < 3 {
			p := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := p.TextToMetricFamilies(bytes.NewReader(n.Text))
			if err != nil {
				t.Fatalf("%s: expfmt: %v", n.Name, err)
			}
			got := 0
			for _, f := range fams {
				got += len(f.Metric)
			}
			if got != n.Series {
				t.Errorf("%s: expfmt read %d samples, want %d", n.Name, got, n.Series)
			}
			t.Logf("%s: %d series (%d node-level), %d bytes, %d families, %.1f%% timestamped", n.Name, n.Series, nodeLevel, len(n.Text), len(fams), 100*float64(ts)/float64(lines))
		}
	}
}

// TestFamiliesGroupedAndUnique: every family's lines are contiguous, HELP/TYPE once, and
// no series appears twice (pods were really cloned, not copied).
func TestFamiliesGroupedAndUnique(t *testing.T) {
	tpl := mustTemplate(t)
	n := tpl.GenerateNode(DefaultWorkload(1), 0)
	seenFam := map[string]bool{}
	helps := map[string]int{}
	series := map[string]bool{}
	cur := ""
	for _, l := range strings.Split(string(n.Text), "\n") {
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "# HELP ") {
			helps[strings.Fields(l)[2]]++
			continue
		}
		if l[0] == '#' {
			continue
		}
		name := metricName([]byte(l))
		if name != cur {
			if seenFam[name] {
				t.Fatalf("family %s is split: seen again after %s", name, cur)
			}
			seenFam[name] = true
			cur = name
		}
		key := name
		if i := strings.LastIndexByte(l, '}'); i >= 0 {
			key = l[:i+1]
		}
		if series[key] {
			t.Fatalf("duplicate series %s", key)
		}
		series[key] = true
	}
	for f, c := range helps {
		if c != 1 {
			t.Errorf("HELP of %s %d times", f, c)
		}
	}
	if len(seenFam) < 50 {
		t.Errorf("only %d families", len(seenFam))
	}
}

// TestNamespacesHeavyTailed: the pods of a 50-node cluster spread over many namespaces,
// with a heavy head: the biggest namespace holds far more than the median one, and the top
// 10% of the namespaces hold a large share.
func TestNamespacesHeavyTailed(t *testing.T) {
	tpl := mustTemplate(t)
	w := DefaultWorkload(50)
	count := map[string]int{}
	total := 0
	for i := range w.Nodes {
		for _, p := range tpl.GenerateNode(w, i).Pods {
			if p.Namespace == "kube-system" {
				continue
			}
			if _, ok := w.NamespaceLabels()[p.Namespace]; !ok {
				t.Fatalf("pod in unknown namespace %s", p.Namespace)
			}
			count[p.Namespace]++
			total++
		}
	}
	var c []int
	for _, v := range count {
		c = append(c, v)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(c)))
	top10 := 0
	for _, v := range c[:w.Namespaces/10] {
		top10 += v
	}
	median := c[len(c)/2]
	t.Logf("%d app pods in %d namespaces; biggest %d, median %d, top 10%% of namespaces hold %.0f%%", total, len(c), c[0], median, 100*float64(top10)/float64(total))
	if len(c) < 80 {
		t.Errorf("pods in only %d namespaces, want a spread over most of %d", len(c), w.Namespaces)
	}
	if c[0] < 20*median {
		t.Errorf("biggest namespace %d pods, median %d: not heavy-tailed", c[0], median)
	}
	if float64(top10) < 0.45*float64(total) {
		t.Errorf("top 10%% of namespaces hold %d of %d pods, want >= 45%%", top10, total)
	}
}

// TestDeterministicAndDistinct: the same seed gives the same node; different nodes differ.
func TestDeterministicAndDistinct(t *testing.T) {
	tpl := mustTemplate(t)
	w := DefaultWorkload(2)
	a, b := tpl.GenerateNode(w, 0), tpl.GenerateNode(w, 0)
	if !bytes.Equal(a.Text, b.Text) {
		t.Fatal("same node twice differs")
	}
	c := tpl.GenerateNode(w, 1)
	if bytes.Equal(a.Text, c.Text) || slices.Equal(a.Pods, c.Pods) {
		t.Fatal("nodes 1 and 2 are the same")
	}
}

// TestPreparedTimestampsMove: served through fakekubelet's Capture, the newest timestamp
// is the scrape time and every timestamp moves with it.
func TestPreparedTimestampsMove(t *testing.T) {
	tpl := mustTemplate(t)
	n := tpl.GenerateNode(DefaultWorkload(1), 0)
	c, err := n.Prepare()
	if err != nil {
		t.Fatal(err)
	}
	if c.Series != n.Series {
		t.Fatalf("capture has %d series, node %d", c.Series, n.Series)
	}
	now := time.Now().Truncate(time.Millisecond)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(c.AppendTo(nil, now)))
	if err != nil {
		t.Fatal(err)
	}
	var newest, oldest int64 = 0, 1 << 62
	for _, f := range fams {
		for _, m := range f.Metric {
			if m.TimestampMs != nil {
				newest = max(newest, *m.TimestampMs)
				oldest = min(oldest, *m.TimestampMs)
			}
		}
	}
	if newest != now.UnixMilli() {
		t.Fatalf("newest timestamp %d, want now %d", newest, now.UnixMilli())
	}
	if spread := time.Duration(newest-oldest) * time.Millisecond; spread <= 0 || spread > 60*time.Second {
		t.Fatalf("timestamps spread over %s, want some seconds", spread)
	}
}
