package bed

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// WebhookMessage is what Alertmanager posts to a webhook_config.
type WebhookMessage struct {
	Receiver          string            `json:"receiver"`
	Status            string            `json:"status"`
	GroupKey          string            `json:"groupKey"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	Alerts            []WebhookAlert    `json:"alerts"`
	// Path is the URL path it was posted to ("/frontend"); Received when.
	Path     string    `json:"-"`
	Received time.Time `json:"-"`
}

// WebhookAlert is one alert of a WebhookMessage.
type WebhookAlert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
	Fingerprint string            `json:"fingerprint"`
}

// Webhook is the bed's in-process HTTP server that records what Alertmanager delivers.
// Each team's receiver posts to URL/<team>, the default receiver to URL/default.
type Webhook struct {
	URL string

	mu      sync.Mutex
	msgs    []WebhookMessage
	changed chan struct{}
	srv     *http.Server
}

func newWebhook() *Webhook { return &Webhook{changed: make(chan struct{})} }

func (b *Bed) startWebhook(context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	w := b.Webhook
	w.URL = "http://" + ln.Addr().String()
	w.srv = &http.Server{Handler: w, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = w.srv.Serve(ln) }()
	return nil
}

func (w *Webhook) close() {
	if w.srv != nil {
		_ = w.srv.Close()
	}
}

func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		http.Error(rw, err.Error(), 400)
		return
	}
	var m WebhookMessage
	if err := json.Unmarshal(body, &m); err != nil {
		http.Error(rw, err.Error(), 400)
		return
	}
	m.Path, m.Received = r.URL.Path, time.Now()
	w.mu.Lock()
	w.msgs = append(w.msgs, m)
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

// Messages returns what the receiver ("frontend", "backend", "default") got so far, oldest
// first.
func (w *Webhook) Messages(receiver string) []WebhookMessage {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []WebhookMessage
	for _, m := range w.msgs {
		if strings.TrimPrefix(m.Path, "/") == receiver {
			out = append(out, m)
		}
	}
	return out
}

// All returns every message, oldest first.
func (w *Webhook) All() []WebhookMessage {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]WebhookMessage(nil), w.msgs...)
}

// Reset forgets what was recorded.
func (w *Webhook) Reset() {
	w.mu.Lock()
	w.msgs = nil
	w.mu.Unlock()
}

// Alerts returns the alerts the receiver got (every message flattened), with status
// ("firing"/"resolved").
func (w *Webhook) Alerts(receiver string) []WebhookAlert {
	var out []WebhookAlert
	for _, m := range w.Messages(receiver) {
		out = append(out, m.Alerts...)
	}
	return out
}

// WaitAlert waits until the receiver got an alert with status ("" = any) whose labels
// include every label of match, and returns it.
func (w *Webhook) WaitAlert(ctx context.Context, receiver, status string, match map[string]string, timeout time.Duration) (WebhookAlert, error) {
	return w.WaitAlertSince(ctx, receiver, status, match, time.Time{}, timeout)
}

// WaitAlertSince is WaitAlert counting only messages received after since.
func (w *Webhook) WaitAlertSince(ctx context.Context, receiver, status string, match map[string]string, since time.Time, timeout time.Duration) (WebhookAlert, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		w.mu.Lock()
		changed := w.changed
		w.mu.Unlock()
		for _, m := range w.Messages(receiver) {
			if m.Received.Before(since) {
				continue
			}
			for _, a := range m.Alerts {
				if (status == "" || a.Status == status) && hasLabels(a.Labels, match) {
					return a, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return WebhookAlert{}, fmt.Errorf("receiver %s got no %s alert matching %v within %s (got %d messages in all)", receiver, status, match, timeout, len(w.All()))
		case <-changed:
		}
	}
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
