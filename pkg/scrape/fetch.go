package scrape

import (
	"bytes"
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
	Fetch(ctx context.Context, t *Target, buf *bytes.Buffer) (contentType string, err error)
}

// BodyTooLargeError is a payload over --body-size-limit.
type BodyTooLargeError struct{ Limit int64 }

func (e *BodyTooLargeError) Error() string {
	return fmt.Sprintf("body larger than --body-size-limit (%d bytes); raise the limit if this target is legitimately that large", e.Limit)
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

// Fetch implements Fetcher.
func (f *APIServerFetcher) Fetch(ctx context.Context, t *Target, buf *bytes.Buffer) (string, error) {
	req := f.Client.Get().Resource("nodes").Name(t.Node).SubResource("proxy").
		Suffix(strings.TrimPrefix(t.Path, "/")).SetHeader("Accept", acceptHeader)
	rc, err := req.Stream(ctx)
	if err != nil {
		var se apierrors.APIStatus
		if errors.As(err, &se) {
			code := int(se.Status().Code)
			if code == http.StatusUnauthorized || code == http.StatusForbidden {
				return "", &PermissionError{Status: code, Permission: "get nodes/proxy", Detail: se.Status().Message}
			}
			return "", fmt.Errorf("apiserver node proxy: HTTP %d: %s", code, se.Status().Message)
		}
		return "", err
	}
	defer rc.Close()
	// The REST client does not expose the response headers of a stream;
	// the kubelet's cAdvisor endpoint always answers in the text format.
	return "text/plain", readLimited(rc, buf, f.Limit)
}

// HTTPFetcher fetches a URL directly: a kubelet in kubelet mode (with the
// service-account token and the kubelet CA) or a plain target.
type HTTPFetcher struct {
	Client *http.Client
	Limit  int64
	// Permission names what a 401/403 means for this kind of target.
	Permission string
}

// Fetch implements Fetcher.
func (f *HTTPFetcher) Fetch(ctx context.Context, t *Target, buf *bytes.Buffer) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", acceptHeader)
	resp, err := f.Client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		detail, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", &PermissionError{Status: resp.StatusCode, Permission: f.Permission, Detail: string(detail)}
	}
	if resp.StatusCode != http.StatusOK {
		detail, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", fmt.Errorf("HTTP %s: %s", resp.Status, strings.TrimSpace(string(detail)))
	}
	return resp.Header.Get("Content-Type"), readLimited(resp.Body, buf, f.Limit)
}

func readLimited(r io.Reader, buf *bytes.Buffer, limit int64) error {
	if limit <= 0 {
		_, err := buf.ReadFrom(r)
		return err
	}
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return err
	}
	if n > limit {
		return &BodyTooLargeError{Limit: limit}
	}
	return nil
}
