package remotewrite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/version"
)

const (
	// secretRefresh is how often token and password files are re-read, so
	// that rotated Kubernetes secrets and projected tokens are picked up.
	secretRefresh = 10 * time.Second
	// maxRetryAfter caps a receiver's Retry-After so that a bogus value
	// cannot park a shard for hours; the receiver can ask again.
	maxRetryAfter = 10 * time.Minute
	// errorBodyLimit is how much of an error response is kept for logs.
	errorBodyLimit = 512
	// drainLimit is how much of a response is read before closing it, so
	// that the connection can be reused.
	drainLimit = 64 << 10
)

// client sends encoded WriteRequests to one receiver.
type client struct {
	url        string
	httpClient *http.Client
	headers    http.Header // user headers; never protocol headers
	userAgent  string
	timeout    time.Duration
	token      *secretFile // bearer token, or nil
	username   string
	password   *secretFile // basic-auth password, or nil
	now        func() time.Time
}

func newClient(e EndpointConfig) (*client, error) {
	tlsConfig, err := e.TLS.build()
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsConfig
	// One idle connection per shard, or shards would keep re-dialling
	// (the default keeps only 2 per host).
	transport.MaxIdleConnsPerHost = e.Queue.Shards + 1
	transport.MaxIdleConns = e.Queue.Shards + 1
	c := &client{
		url: e.URL,
		httpClient: &http.Client{
			Transport: transport,
			// A redirect would turn the POST into a GET or need the body
			// again; a receiver URL that redirects is a configuration error
			// to surface, not to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		headers:   make(http.Header, len(e.Headers)),
		userAgent: version.UserAgent(),
		timeout:   e.Timeout,
		username:  e.BasicAuth.Username,
		now:       time.Now,
	}
	for k, v := range e.Headers {
		c.headers.Set(k, v)
	}
	if e.BearerTokenFile != "" {
		c.token = &secretFile{path: e.BearerTokenFile}
	}
	if e.BasicAuth.PasswordFile != "" {
		c.password = &secretFile{path: e.BasicAuth.PasswordFile}
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
	if c.token != nil {
		tok, err := c.token.get(c.now())
		if err != nil {
			return 0, &RecoverableError{Err: fmt.Errorf("reading bearer token: %w", err)}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if c.password != nil {
		pw, err := c.password.get(c.now())
		if err != nil {
			return 0, &RecoverableError{Err: fmt.Errorf("reading basic auth password: %w", err)}
		}
		req.SetBasicAuth(c.username, pw)
	}

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

// secretFile is a credential file, re-read every secretRefresh. A failed
// re-read keeps the last good value: Kubernetes swaps secret volumes through
// a symlink, and a read can race with the swap.
type secretFile struct {
	path string

	mu     sync.Mutex
	value  string
	readAt time.Time
}

func (f *secretFile) get(now time.Time) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.value != "" && now.Sub(f.readAt) < secretRefresh {
		return f.value, nil
	}
	v, err := readSecretFile(f.path)
	if err != nil {
		if f.value != "" {
			return f.value, nil
		}
		return "", err
	}
	f.value, f.readAt = v, now
	return v, nil
}
