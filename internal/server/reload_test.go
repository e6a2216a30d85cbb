package server

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestReloadEndpoint(t *testing.T) {
	var calls int
	var fail error
	base := start(t, Config{View: testView(t), Gatherer: prometheus.NewRegistry(), Ready: func() error { return nil },
		Reload: func() error { calls++; return fail }})
	do := func(method string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+PathReload, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := do(http.MethodGet); code != http.StatusMethodNotAllowed || calls != 0 {
		t.Errorf("GET: %d, %d reloads", code, calls)
	}
	if code, _ := do(http.MethodPost); code != http.StatusOK || calls != 1 {
		t.Errorf("POST: %d, %d reloads", code, calls)
	}
	fail = errors.New("relay.yml:3: bad")
	if code, body := do(http.MethodPut); code != http.StatusInternalServerError || !strings.Contains(body, "relay.yml:3: bad") || calls != 2 {
		t.Errorf("failed reload: %d %q, %d reloads", code, body, calls)
	}

	// Without a Reload function there is no such endpoint.
	base = start(t, Config{View: testView(t), Gatherer: prometheus.NewRegistry(), Ready: func() error { return nil }})
	resp, err := http.Post(base+PathReload, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("no Reload: %d", resp.StatusCode)
	}
}
