package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
)

// apiserverCheckTimeout is how long start-up waits for the apiserver to
// answer at all: an apiserver still starting gets a few seconds, a wrong
// address or a refused connection is reported well before the cache-sync
// timeout would blame RBAC.
var apiserverCheckTimeout = 10 * time.Second

// checkAPIServer asks the apiserver for /version until it answers or
// timeout passes, and returns the real error (connection refused, no such
// host, certificate, credentials) if it never did. Any answer but 401
// means the apiserver is there; what the relay may read is for the caches
// to find out.
func checkAPIServer(ctx context.Context, c rest.Interface, host string, timeout time.Duration, logger *slog.Logger) error {
	// Each attempt has its own deadline, not a share of the overall one:
	// an attempt cut short by the overall deadline would only report that.
	deadline := time.Now().Add(timeout)
	var last error
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, timeout/2)
		err := c.Get().AbsPath("/version").Do(actx).Error()
		acancel()
		var se apierrors.APIStatus
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return nil // stopping: not the apiserver's fault
		case errors.As(err, &se) && se.Status().Code == http.StatusUnauthorized:
			return fmt.Errorf("kube-apiserver %s refused the relay's credentials (401): %w", host, err)
		case errors.As(err, &se):
			return nil // it answered
		}
		last = err
		if errors.Is(last, context.DeadlineExceeded) {
			last = fmt.Errorf("no answer within %s: %w", timeout/2, err)
		}
		if attempt == 1 {
			logger.Warn("kube-apiserver not reachable yet; retrying", "host", host, "err", err)
		}
		if time.Now().Add(time.Second).After(deadline) {
			return fmt.Errorf("cannot reach the kube-apiserver at %s (--kubeconfig, --kube-apiserver or the in-cluster config): %w", host, last)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}
