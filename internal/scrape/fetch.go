package scrape

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
)

// acceptHeader asks for the text format, as Prometheus does when it cannot
// use protobuf; kubelets always serve text.
const acceptHeader = "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1"

// Fetcher gets one target's payload into buf. It returns the content type.
type Fetcher interface {
	// Open starts fetching t: the payload, which the caller reads and
	// closes, and its content type. Reads past the body size limit fail
	// with a *BodyTooLargeError.
	Open(ctx context.Context, t *Target) (body io.ReadCloser, contentType string, err error)
}

// BodyTooLargeError is a payload over the fetcher's body size limit.
type BodyTooLargeError struct{ Limit int64 }

func (e *BodyTooLargeError) Error() string {
	return fmt.Sprintf("body larger than the body size limit (%d bytes); raise the limit if this target is legitimately that large", e.Limit)
}

// PermissionError is a 401 or 403: it names the permission the relay lacks.
type PermissionError struct {
	Status     int
	Permission string
	Detail     string
}

func (e *PermissionError) Error() string {
	what := "unauthorized (401): the credentials were not accepted"
	if e.Status == http.StatusForbidden {
		what = "forbidden (403)"
	}
	return fmt.Sprintf("%s: the relay's identity needs RBAC permission %q: %s", what, e.Permission, strings.TrimSpace(e.Detail))
}

// APIServerFetcher fetches through the kube-apiserver's node proxy:
// GET /api/v1/nodes/NAME/proxy/PATH.
type APIServerFetcher struct {
	Client rest.Interface // a core/v1 REST client without client-side rate limiting
	Limit  int64
}

// Open implements Fetcher.
func (f *APIServerFetcher) Open(ctx context.Context, t *Target) (io.ReadCloser, string, error) {
	req := f.Client.Get().Resource("nodes").Name(t.Node).SubResource("proxy").
		Suffix(strings.TrimPrefix(t.Path, "/")).SetHeader("Accept", acceptHeader)
	rc, err := req.Stream(ctx)
	if err != nil {
		var se apierrors.APIStatus
		if errors.As(err, &se) {
			code := int(se.Status().Code)
			if code == http.StatusUnauthorized || code == http.StatusForbidden {
				return nil, "", &PermissionError{Status: code, Permission: "get nodes/proxy", Detail: se.Status().Message}
			}
			return nil, "", fmt.Errorf("apiserver node proxy: HTTP %d: %s", code, se.Status().Message)
		}
		return nil, "", err
	}
	// The REST client does not expose the response headers of a stream;
	// the kubelet's cAdvisor endpoint always answers in the text format.
	return &limitedBody{ReadCloser: rc, limit: f.Limit}, "text/plain", nil
}

// HTTPFetcher fetches a URL directly: a kubelet in kubelet mode (with the
// service-account token and the kubelet CA) or a plain target.
type HTTPFetcher struct {
	Client *http.Client
	Limit  int64
	// Permission names what a 401/403 means for this kind of target.
	Permission string
}

// Open implements Fetcher.
func (f *HTTPFetcher) Open(ctx context.Context, t *Target) (io.ReadCloser, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Accept", acceptHeader)
	resp, err := f.Client.Do(req)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		detail, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return nil, "", &PermissionError{Status: resp.StatusCode, Permission: f.Permission, Detail: string(detail)}
		}
		return nil, "", fmt.Errorf("HTTP %s: %s", resp.Status, strings.TrimSpace(string(detail)))
	}
	return &limitedBody{ReadCloser: resp.Body, limit: f.Limit}, resp.Header.Get("Content-Type"), nil
}

// limitedBody fails reads past limit bytes (if limit > 0) with a
// *BodyTooLargeError.
type limitedBody struct {
	io.ReadCloser
	limit, n int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.limit <= 0 {
		return b.ReadCloser.Read(p)
	}
	if left := b.limit - b.n + 1; int64(len(p)) > left {
		p = p[:left] // one byte past the limit tells a body just at it
	}
	k, err := b.ReadCloser.Read(p)
	b.n += int64(k)
	if b.n > b.limit {
		return k, &BodyTooLargeError{Limit: b.limit}
	}
	return k, err
}
