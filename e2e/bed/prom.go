package bed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func (b *Bed) startAlertmanager(ctx context.Context) error {
	port, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	b.AlertmanagerURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	var sb strings.Builder
	sb.WriteString(`# The README route: alerts go to their team's receiver.
route:
  receiver: default
  group_by: [alertname, team, namespace]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
`)
	for _, t := range b.Teams {
		fmt.Fprintf(&sb, "  - matchers: ['team=%q']\n    receiver: %s\n", t, t)
	}
	sb.WriteString("receivers:\n")
	fmt.Fprintf(&sb, "- name: default\n  webhook_configs:\n  - url: %s/default\n    send_resolved: true\n", b.Webhook.URL)
	for _, t := range b.Teams {
		fmt.Fprintf(&sb, "- name: %s\n  webhook_configs:\n  - url: %s/%s\n    send_resolved: true\n", t, b.Webhook.URL, t)
	}
	cfg := filepath.Join(b.Dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte(sb.String()), 0o644); err != nil {
		return err
	}
	b.am = b.newProc("alertmanager", b.bin.alertmanager,
		"--config.file="+cfg, "--storage.path="+filepath.Join(b.Dir, "alertmanager"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--cluster.listen-address=",
		"--log.level=info")
	if err := b.am.start(); err != nil {
		return err
	}
	return waitFor(ctx, "alertmanager", 30*time.Second, b.am, httpOK(httpClient, b.AlertmanagerURL+"/-/ready", nil))
}

func (b *Bed) startPrometheus(ctx context.Context) error {
	port, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	b.PrometheusURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	b.RemoteWriteURL = b.PrometheusURL + "/api/v1/write"
	rules := fmt.Sprintf(`groups:
- name: kmp-bed
  rules:
  - alert: %s
    expr: %s
    for: 0s
    labels:
      severity: info
    annotations:
      summary: "{{ $labels.namespace }} of team {{ $labels.team }} has running containers"
`, AlertName, AlertExpr)
	rulesFile := filepath.Join(b.Dir, "rules.yml")
	if err := os.WriteFile(rulesFile, []byte(rules), 0o644); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 15s
  evaluation_interval: %s
rule_files: [%q]
alerting:
  alertmanagers:
  - static_configs:
    - targets: [%q]
`, b.opts.EvaluationInterval, rulesFile, strings.TrimPrefix(b.AlertmanagerURL, "http://"))
	if b.opts.OutOfOrderWindow > 0 {
		cfg += fmt.Sprintf("storage:\n  tsdb:\n    out_of_order_time_window: %s\n", b.opts.OutOfOrderWindow)
	}
	cfgFile := filepath.Join(b.Dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		return err
	}
	b.prom = b.newProc("prometheus", b.bin.prometheus,
		"--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(b.Dir, "prometheus"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
		"--web.enable-remote-write-receiver", "--web.enable-lifecycle",
		"--storage.tsdb.retention.time=1d", "--rules.alert.resend-delay=2s")
	if err := b.prom.start(); err != nil {
		return err
	}
	return b.waitPrometheus(ctx)
}

func (b *Bed) waitPrometheus(ctx context.Context) error {
	return waitFor(ctx, "prometheus", 60*time.Second, b.prom, httpOK(httpClient, b.PrometheusURL+"/-/ready", nil))
}

// StopPrometheus stops Prometheus (SIGTERM); its storage stays for StartPrometheus.
func (b *Bed) StopPrometheus() { b.prom.stop(30 * time.Second) }

// StartPrometheus starts Prometheus again on the same port and storage and waits until ready.
func (b *Bed) StartPrometheus(ctx context.Context) error {
	if b.prom.running() {
		return nil
	}
	if err := b.prom.start(); err != nil {
		return err
	}
	return b.waitPrometheus(ctx)
}

// Sample is one element of a Prometheus instant vector or one point of a range.
type Sample struct {
	Metric map[string]string
	T      time.Time
	V      float64
}

// Series is one series of a range query.
type Series struct {
	Metric map[string]string
	Points []Sample
}

type promResp struct {
	Status    string `json:"status"`
	Error     string `json:"error"`
	ErrorType string `json:"errorType"`
	Data      struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

func (b *Bed) promAPI(ctx context.Context, path string, params url.Values) (*promResp, error) {
	return promAPIAt(ctx, b.PrometheusURL, nil, path, params)
}

// promAPIAt calls the Prometheus HTTP API under base (Prometheus, or Cortex's /prometheus)
// with extra headers (a tenant's X-Scope-OrgID).
func promAPIAt(ctx context.Context, base string, header http.Header, path string, params url.Values) (*promResp, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(params.Encode()))
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	code, body, err := doRead(httpClient, req)
	if err != nil {
		return nil, err
	}
	var r promResp
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%s: %d: %s", path, code, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s %s: %s: %s", path, params.Get("query"), r.ErrorType, r.Error)
	}
	return &r, nil
}

func parsePoint(p [2]any) (time.Time, float64, error) {
	ts, _ := p[0].(float64)
	vs, _ := p[1].(string)
	v, err := strconv.ParseFloat(vs, 64)
	return time.UnixMilli(int64(ts * 1000)), v, err
}

// Query runs an instant PromQL query now and returns the vector (a scalar comes back as one
// sample without labels).
func (b *Bed) Query(ctx context.Context, q string) ([]Sample, error) {
	return queryAt(ctx, b.PrometheusURL, nil, q)
}

func queryAt(ctx context.Context, base string, header http.Header, q string) ([]Sample, error) {
	r, err := promAPIAt(ctx, base, header, "/api/v1/query", url.Values{"query": {q}})
	if err != nil {
		return nil, err
	}
	switch r.Data.ResultType {
	case "scalar":
		var p [2]any
		if err := json.Unmarshal(r.Data.Result, &p); err != nil {
			return nil, err
		}
		t, v, err := parsePoint(p)
		return []Sample{{Metric: map[string]string{}, T: t, V: v}}, err
	case "vector":
		var res []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(r.Data.Result, &res); err != nil {
			return nil, err
		}
		out := make([]Sample, 0, len(res))
		for _, s := range res {
			t, v, err := parsePoint(s.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, Sample{Metric: s.Metric, T: t, V: v})
		}
		return out, nil
	}
	return nil, fmt.Errorf("query %s: result type %s", q, r.Data.ResultType)
}

// QueryRange runs a range query.
func (b *Bed) QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]Series, error) {
	r, err := b.promAPI(ctx, "/api/v1/query_range", url.Values{
		"query": {q}, "start": {fmtTime(start)}, "end": {fmtTime(end)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	})
	if err != nil {
		return nil, err
	}
	var res []struct {
		Metric map[string]string `json:"metric"`
		Values [][2]any          `json:"values"`
	}
	if err := json.Unmarshal(r.Data.Result, &res); err != nil {
		return nil, err
	}
	out := make([]Series, 0, len(res))
	for _, s := range res {
		ser := Series{Metric: s.Metric}
		for _, p := range s.Values {
			t, v, err := parsePoint(p)
			if err != nil {
				return nil, err
			}
			ser.Points = append(ser.Points, Sample{Metric: s.Metric, T: t, V: v})
		}
		out = append(out, ser)
	}
	return out, nil
}

func fmtTime(t time.Time) string { return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64) }

// WaitQuery runs q every 500ms until cond accepts the result or timeout passes; it returns
// the last result.
func (b *Bed) WaitQuery(ctx context.Context, q string, timeout time.Duration, cond func([]Sample) bool) ([]Sample, error) {
	return waitQuery(ctx, func(ctx context.Context) ([]Sample, error) { return b.Query(ctx, q) }, q, timeout, cond)
}

func waitQuery(ctx context.Context, query func(context.Context) ([]Sample, error), q string, timeout time.Duration, cond func([]Sample) bool) ([]Sample, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last []Sample
	var lastErr error
	for {
		res, err := query(ctx)
		if err == nil && cond(res) {
			return res, nil
		}
		if err == nil {
			last = res
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("query %s: condition not met within %s (last error %v, last result %d samples)", q, timeout, lastErr, len(last))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// NonEmpty is a WaitQuery condition.
func NonEmpty(s []Sample) bool { return len(s) > 0 }

// Empty is a WaitQuery condition.
func Empty(s []Sample) bool { return len(s) == 0 }

// AMAlert is an alert as Alertmanager's API v2 lists it.
type AMAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
	Receivers []struct {
		Name string `json:"name"`
	} `json:"receivers"`
}

// AlertmanagerAlerts lists the alerts Alertmanager holds.
func (b *Bed) AlertmanagerAlerts(ctx context.Context) ([]AMAlert, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.AlertmanagerURL+"/api/v2/alerts", nil)
	if err != nil {
		return nil, err
	}
	code, body, err := doRead(httpClient, req)
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("alertmanager alerts: %d: %s", code, body)
	}
	var out []AMAlert
	return out, json.Unmarshal(body, &out)
}

// PostAlert posts an alert to Alertmanager directly (API v2), firing for d.
func (b *Bed) PostAlert(ctx context.Context, labels map[string]string, d time.Duration) error {
	body, _ := json.Marshal([]map[string]any{{
		"labels": labels, "annotations": map[string]string{"summary": "posted by the test bed"},
		"startsAt": time.Now().UTC().Format(time.RFC3339Nano), "endsAt": time.Now().Add(d).UTC().Format(time.RFC3339Nano),
	}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.AlertmanagerURL+"/api/v2/alerts", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	code, rb, err := doRead(httpClient, req)
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("post alert: %d: %s", code, rb)
	}
	return nil
}

// PrometheusAlerts lists the alerts of Prometheus' rules (GET /api/v1/alerts).
func (b *Bed) PrometheusAlerts(ctx context.Context) ([]AMAlert, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.PrometheusURL+"/api/v1/alerts", nil)
	if err != nil {
		return nil, err
	}
	_, body, err := doRead(httpClient, req)
	if err != nil {
		return nil, err
	}
	var r struct {
		Data struct {
			Alerts []struct {
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
				State       string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	var out []AMAlert
	for _, a := range r.Data.Alerts {
		x := AMAlert{Labels: a.Labels, Annotations: a.Annotations}
		x.Status.State = a.State
		out = append(out, x)
	}
	return out, nil
}
