package mixin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

const runbookBase = "https://github.com/kubelet-meta-proxy/kubelet-meta-proxy/blob/main/mixin/runbook.md#"

var promqlParser = parser.NewParser(parser.Options{})

// query is one PromQL expression of the mixin and where it is.
type query struct {
	where string
	expr  string
}

// grafanaVars replaces Grafana's interval variables, which are not PromQL, by durations. Other variables
// ($job, $instance) only appear inside label-matcher strings, where they parse as they are.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

type panel struct {
	ID          int               `json:"id"`
	Type        string            `json:"type"`
	Title       string            `json:"title"`
	Description string            `json:"description"`
	Datasource  map[string]string `json:"datasource"`
	GridPos     struct{ H, W, X, Y int }
	Targets     []struct {
		Datasource map[string]string `json:"datasource"`
		Expr       string            `json:"expr"`
		RefID      string            `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

type dash struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func dashboards(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob("dashboards/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards/*.json (%v)", err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = b
	}
	return out
}

// DashboardQueries returns every PromQL query of a dashboard: the panels' targets and the query variables'
// label_values(...) selectors, with Grafana's interval variables replaced.
func dashboardQueries(t *testing.T, file string, b []byte) []query {
	t.Helper()
	var d dash
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var qs []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				qs = append(qs, query{fmt.Sprintf("%s: panel %d %q target %s", file, p.ID, p.Title, tg.RefID), grafanaVars.Replace(tg.Expr)})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("%s: variable %s: query: %v", file, v.Name, err)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("%s: variable %s: %q is not label_values(SELECTOR, LABEL)", file, v.Name, q.Query)
		}
		// The label the variable lists must be one the selector's series have: checked as a matcher on it.
		expr, err := promqlParser.ParseExpr(m[1])
		vs, ok := expr.(*parser.VectorSelector)
		if err != nil || !ok {
			t.Fatalf("%s: variable %s: %q is not a series selector (%v)", file, v.Name, m[1], err)
		}
		vs.LabelMatchers = append(vs.LabelMatchers, labels.MustNewMatcher(labels.MatchNotEqual, m[2], ""))
		qs = append(qs, query{fmt.Sprintf("%s: variable %s", file, v.Name), vs.String()})
	}
	return qs
}

func ruleGroups(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	rgs, errs := rulefmt.ParseFile("alerts.yaml", false, model.UTF8Validation, promqlParser, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("alerts.yaml: %v", errs)
	}
	return rgs
}

func alertQueries(t *testing.T) []query {
	var qs []query
	for _, g := range ruleGroups(t).Groups {
		for _, r := range g.Rules {
			qs = append(qs, query{"alerts.yaml: " + r.Alert + r.Record, r.Expr})
		}
	}
	return qs
}

// Every query of every dashboard and alert parses, and names only series the relay exposes, with label
// matchers only on labels those series have.
func TestQueriesNameOnlyExposedMetrics(t *testing.T) {
	metrics := exposed(t)
	qs := alertQueries(t)
	for f, b := range dashboards(t) {
		qs = append(qs, dashboardQueries(t, f, b)...)
	}
	if len(qs) < 20 {
		t.Fatalf("only %d queries found: the walk misses some", len(qs))
	}
	used := map[string]bool{}
	for _, q := range qs {
		expr, err := promqlParser.ParseExpr(q.expr)
		if err != nil {
			t.Errorf("%s: %q: %v", q.where, q.expr, err)
			continue
		}
		n := 0
		parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
			vs, ok := node.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			n++
			name := vs.Name
			if name == "" {
				t.Errorf("%s: selector %s has no metric name", q.where, vs)
				return nil
			}
			have, ok := metrics[name]
			if !ok {
				t.Errorf("%s: %s is not exposed by the relay", q.where, name)
				return nil
			}
			used[name] = true
			for _, m := range vs.LabelMatchers {
				if m.Name != model.MetricNameLabel && !have[m.Name] {
					t.Errorf("%s: %s has no label %q (it has %v)", q.where, name, m.Name, keys(have))
				}
			}
			return nil
		})
		if n == 0 {
			t.Errorf("%s: %q selects no series", q.where, q.expr)
		}
	}
	// The content covers what the relay is for: a family nobody looks at is a gap (or dead code).
	for _, must := range []string{
		"kubelet_meta_proxy_build_info", "kubelet_meta_proxy_informer_synced", "kubelet_meta_proxy_enrichment_total",
		"kubelet_meta_proxy_target_up", "kubelet_meta_proxy_target_scrape_errors_total",
		"kubelet_meta_proxy_remote_write_samples_dropped_total", "kubelet_meta_proxy_remote_write_queue_length",
		"kubelet_meta_proxy_remote_write_highest_sent_timestamp_seconds", "kubelet_meta_proxy_remote_write_samples_sent_total",
	} {
		if !used[must] {
			t.Errorf("no dashboard panel or alert uses %s", must)
		}
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The dashboards decode strictly into Grafana's dashboard schema (grafana-foundation-sdk's types generated
// from Grafana's schemas, with the panel plugins' options), and pass this project's lint rules, after
// grafana/dashboard-linter's: a datasource variable used by every panel and target, $__rate_interval in every
// rate, every self-metric selector filtered by $job and $instance, unique panel ids, titles and descriptions,
// panels that lie on the 24-column grid without overlapping.
func TestDashboardsLint(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	for file, b := range dashboards(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			// The classic (v1) dashboard JSON is what Grafana's provisioning and the Grafana chart's
			// dashboard sidecar load from a ConfigMap; v2 is the new Kubernetes-style resource.
			//lint:ignore SA1019 the mixin ships v1 dashboards on purpose (see above)
			var d dashboard.Dashboard
			if err := sdkErr(d.UnmarshalJSONStrict(b)); err != nil {
				t.Fatalf("not a valid Grafana dashboard: %v", err)
			}
			if err := sdkErr(d.Validate()); err != nil {
				t.Fatalf("Grafana schema validation: %v", err)
			}
			lintDashboard(t, b)
		})
	}
}

// sdkErr turns the SDK's empty error lists (returned as a non-nil error) into nil.
func sdkErr(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

var rangeFuncs = map[string]bool{"rate": true, "irate": true, "increase": true}

func lintDashboard(t *testing.T, b []byte) {
	var d dash
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("uid and title must be set (provisioned dashboards are found by uid)")
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	for name, typ := range map[string]string{"datasource": "datasource", "job": "query", "instance": "query"} {
		if vars[name] != typ {
			t.Errorf("templating: want a %s variable %q, have %q", typ, name, vars[name])
		}
	}
	ds := func(m map[string]string) bool { return m["uid"] == "${datasource}" && m["type"] == "prometheus" }
	ids := map[int]bool{}
	type rect struct{ x, y, w, h int }
	var placed []rect
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if ids[p.ID] || p.ID == 0 {
				t.Errorf("%s: id missing or used twice", where)
			}
			ids[p.ID] = true
			g := p.GridPos
			if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("%s: gridPos %+v off the 24-column grid", where, g)
			}
			r := rect{g.X, g.Y, g.W, g.H}
			for _, o := range placed {
				if r.x < o.x+o.w && o.x < r.x+r.w && r.y < o.y+o.h && o.y < r.y+r.h {
					t.Errorf("%s: gridPos %+v overlaps another panel", where, g)
				}
			}
			placed = append(placed, r)
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Title == "" || p.Description == "" {
				t.Errorf("%s: title and description must be set", where)
			}
			if !ds(p.Datasource) {
				t.Errorf("%s: datasource %v, want the ${datasource} variable", where, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no query", where)
			}
			for _, tg := range p.Targets {
				if !ds(tg.Datasource) {
					t.Errorf("%s target %s: datasource %v, want the ${datasource} variable", where, tg.RefID, tg.Datasource)
				}
				for _, m := range regexp.MustCompile(`\b(\w+)\([^()]*\[([^\]]+)\]\)`).FindAllStringSubmatch(tg.Expr, -1) {
					if rangeFuncs[m[1]] && m[2] != "$__rate_interval" {
						t.Errorf("%s target %s: %s over [%s], want [$__rate_interval]", where, tg.RefID, m[1], m[2])
					}
				}
				expr, err := promqlParser.ParseExpr(grafanaVars.Replace(tg.Expr))
				if err != nil {
					continue // reported by TestQueriesNameOnlyExposedMetrics
				}
				parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
					vs, ok := node.(*parser.VectorSelector)
					if !ok || vs.Name == "" {
						return nil
					}
					var job, inst bool
					for _, m := range vs.LabelMatchers {
						job = job || (m.Name == "job" && m.Type == labels.MatchRegexp && m.Value == "$job")
						inst = inst || (m.Name == "instance" && m.Type == labels.MatchRegexp && m.Value == "$instance")
					}
					if !job || !inst {
						t.Errorf("%s target %s: %s is not filtered by job=~\"$job\", instance=~\"$instance\"", where, tg.RefID, vs.Name)
					}
					return nil
				})
			}
		}
	}
	walk(d.Panels)
}

// Every alert has a severity, a summary, a description and a runbook URL whose section exists in
// runbook.md; every alert has a promtool test that expects it to fire and one that expects it silent.
func TestAlertsConventions(t *testing.T) {
	runbook, err := os.ReadFile("runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## (\S+)$`).FindAllStringSubmatch(string(runbook), -1) {
		sections[strings.ToLower(m[1])] = true
	}
	firing, silent := promtoolExpectations(t)
	alerts := map[string]bool{}
	for _, g := range ruleGroups(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if alerts[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = true
			if s := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, s) {
				t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: annotation %s missing", r.Alert, a)
				}
			}
			if want := runbookBase + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
				t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			if !sections[strings.ToLower(r.Alert)] {
				t.Errorf("%s: runbook.md has no section \"## %s\"", r.Alert, r.Alert)
			}
			if !firing[r.Alert] {
				t.Errorf("%s: no test in tests/*.yaml expects it to fire", r.Alert)
			}
			if !silent[r.Alert] {
				t.Errorf("%s: no test in tests/*.yaml expects it silent (resolved) after firing", r.Alert)
			}
		}
	}
	if len(alerts) == 0 {
		t.Fatal("no alerts")
	}
	for name := range sections {
		found := false
		for a := range alerts {
			found = found || strings.ToLower(a) == name
		}
		if !found {
			t.Errorf("runbook.md section %q has no alert", name)
		}
	}
}

// promtoolExpectations reads tests/*.yaml: the alerts some test expects firing, and those some test expects
// silent at a later time than it expected them firing.
func promtoolExpectations(t *testing.T) (firing, silent map[string]bool) {
	t.Helper()
	files, _ := filepath.Glob("tests/*.yaml")
	if len(files) == 0 {
		t.Fatal("no tests/*.yaml")
	}
	firing, silent = map[string]bool{}, map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var tf struct {
			Tests []struct {
				AlertRuleTest []struct {
					EvalTime  model.Duration `json:"eval_time"`
					Alertname string         `json:"alertname"`
					ExpAlerts []any          `json:"exp_alerts"`
				} `json:"alert_rule_test"`
			} `json:"tests"`
		}
		if err := yaml.UnmarshalStrict(b, &tf, func(d *json.Decoder) *json.Decoder { return d }); err != nil {
			// Only the fields above are read; the rest is promtool's to check.
			if err := yaml.Unmarshal(b, &tf); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
		for _, tc := range tf.Tests {
			firedAt := map[string]model.Duration{}
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					firing[a.Alertname] = true
					if _, ok := firedAt[a.Alertname]; !ok {
						firedAt[a.Alertname] = a.EvalTime
					}
				}
			}
			for _, a := range tc.AlertRuleTest {
				if at, ok := firedAt[a.Alertname]; ok && len(a.ExpAlerts) == 0 && a.EvalTime > at {
					silent[a.Alertname] = true
				}
			}
		}
	}
	return firing, silent
}

// promtool, from Debian's prometheus package (.ci/run installs it), checks the rules and runs their unit tests.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (apt-get install prometheus): %v", err)
	}
	tests, _ := filepath.Glob("tests/*.yaml")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yaml"},
		{"check", "rules", "team-rules.yaml"},
		append([]string{"test", "rules"}, tests...),
	} {
		var out bytes.Buffer
		cmd := exec.Command(promtool, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
	}
}

// The chart and the kustomize component ship copies of this directory's files (`make mixin`): they must be
// current. (deploy/render_test.go checks the rendered PrometheusRule and ConfigMap against them too.)
func TestCopiesAreCurrent(t *testing.T) {
	same := func(src, dst string) {
		a, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s is not a copy of mixin/%s (run `make mixin`): %v", dst, src, err)
		}
	}
	same("alerts.yaml", "../dist/chart/files/alerts.yaml")
	files, _ := filepath.Glob("dashboards/*.json")
	for _, dir := range []string{"../dist/chart/files/dashboards", "../deploy/kustomize/components/mixin/dashboards"} {
		for _, f := range files {
			same(f, filepath.Join(dir, filepath.Base(f)))
		}
		shipped, _ := filepath.Glob(filepath.Join(dir, "*"))
		if len(shipped) != len(files) {
			t.Errorf("%s has %d files, mixin/dashboards %d (run `make mixin`, remove what is gone)", dir, len(shipped), len(files))
		}
	}
	// The component's PrometheusRule is alerts.yaml under spec.
	var rule struct {
		Kind string         `json:"kind"`
		Spec map[string]any `json:"spec"`
	}
	b, err := os.ReadFile("../deploy/kustomize/components/mixin/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rule); err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	a, _ := os.ReadFile("alerts.yaml")
	if err := yaml.Unmarshal(a, &want); err != nil {
		t.Fatal(err)
	}
	if rule.Kind != "PrometheusRule" || !reflectDeepEqualJSON(rule.Spec, want) {
		t.Error("deploy/kustomize/components/mixin/prometheusrule.yaml's spec is not mixin/alerts.yaml (run `make mixin`)")
	}
}

func reflectDeepEqualJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}
