package remotewrite

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/version"
)

const (
	// maxRetryAfter caps a receiver's Retry-After so that a bogus value
	// cannot park a shard for hours; the receiver can ask again.
	maxRetryAfter = 10 * time.Minute
	// errorBodyLimit is how much of an error response is kept for logs.
	errorBodyLimit = 512
	// drainLimit is how much of a response is read before closing it, so
	// that the connection can be reused.
	drainLimit = 64 << 10
)

// client sends encoded WriteRequests to one receiver. Authentication, TLS
// and the rotation of their files are prometheus/common/config's
// (EndpointConfig.newHTTPClient).
type client struct {
	url        string
	httpClient *http.Client
	headers    http.Header // user headers; never protocol headers
	userAgent  string
	timeout    time.Duration
	now        func() time.Time
}

func newClient(e EndpointConfig) (*client, error) {
	hc, err := e.newHTTPClient()
	if err != nil {
		return nil, err
	}
	c := &client{
		url:        e.URL,
		httpClient: hc,
		headers:    make(http.Header, len(e.Headers)),
		userAgent:  version.UserAgent(),
		timeout:    e.Timeout,
		now:        time.Now,
	}
	for k, v := range e.Headers {
		c.headers.Set(k, v)
	}
	return c, nil
}

// send posts one snappy-compressed WriteRequest. It returns the response's
// status code (0 when there was none) and, for anything but 2xx, an error;
// a *RecoverableError when retrying may help.
func (c *client) send(ctx context.Context, body []byte) (int, error) {
	return c.sendTenant(ctx, body, "", "")
}

// sendTenant is send with the header tenantHeader set to tenant (unless
// tenantHeader is empty): tenant routing's one tenant per request.
func (c *client) sendTenant(ctx context.Context, body []byte, tenantHeader, tenant string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	for k, vs := range c.headers {
		req.Header[k] = vs
	}
	if tenantHeader != "" {
		req.Header.Set(tenantHeader, tenant)
	}
	// Set after the user headers so that these always win; validation
	// rejects user headers that would clash anyway.
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	req.Header.Set("User-Agent", c.userAgent)

	resp, err := c.httpClient.Do(req)
	if err != nil {
		// Network errors and timeouts: the receiver may be back soon.
		return 0, &RecoverableError{Err: err}
	}
	defer func() {
		_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
		_ = resp.Body.Close()
	}()
	if resp.StatusCode/100 == 2 {
		return resp.StatusCode, nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
	statusErr := &HTTPStatusError{StatusCode: resp.StatusCode, Body: strings.TrimSpace(string(msg))}
	if resp.StatusCode/100 == 5 || resp.StatusCode == http.StatusTooManyRequests {
		return resp.StatusCode, &RecoverableError{
			Err:        statusErr,
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), c.now()),
		}
	}
	return resp.StatusCode, statusErr
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date
// (RFC 9110 10.2.3). It returns 0 when there is no usable value.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs >= int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
