package remotewrite

import (
	"sort"
	"strconv"
	"strings"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// maxNamedTargets is how many targets the log of a rejected batch names.
const maxNamedTargets = 5

// maxSeriesShown bounds the series quoted in the log of a rejected batch.
const maxSeriesShown = 300

// describeBatch names, for the log of a batch a receiver rejected, the
// targets its samples came from (job/instance, at most maxNamedTargets, and
// how many in all) and its first series. It runs only on a rejection.
func describeBatch(batch []model.Sample) (targets string, first string) {
	if len(batch) == 0 {
		return "", ""
	}
	seen := map[string]bool{}
	for i := range batch {
		s := &batch[i]
		var job, inst string
		it := s.Table.Labels(s.Ref)
		for it.Next() {
			switch string(it.Name) {
			case "job":
				job = string(it.Value)
			case "instance":
				inst = string(it.Value)
			}
		}
		seen[job+"/"+inst] = true
	}
	names := make([]string, 0, len(seen))
	for k := range seen {
		names = append(names, k)
	}
	sort.Strings(names)
	if len(names) > maxNamedTargets {
		names = append(names[:maxNamedTargets], "and "+strconv.Itoa(len(seen)-maxNamedTargets)+" more")
	}
	return strings.Join(names, ", "), seriesText(batch[0])
}

// seriesText writes a sample's series as {name="value", ...}, cut short.
func seriesText(s model.Sample) string {
	var b strings.Builder
	b.WriteByte('{')
	it := s.Table.Labels(s.Ref)
	for n := 0; it.Next(); n++ {
		if n > 0 {
			b.WriteString(", ")
		}
		b.Write(it.Name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(string(it.Value)))
		if b.Len() > maxSeriesShown {
			return b.String()[:maxSeriesShown] + "...}"
		}
	}
	b.WriteByte('}')
	return b.String()
}
