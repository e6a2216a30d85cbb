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
const apiserverCheckTimeout = 10 * time.Second

// checkAPIServer asks the apiserver for /version until it answers or
// timeout passes, and returns the real error (connection refused, no such
// host, certificate, credentials) if it never did. Any answer but 401
// means the apiserver is there; what the relay may read is for the caches
// to find out.
func checkAPIServer(ctx context.Context, c rest.Interface, host string, timeout time.Duration, logger *slog.Logger) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, timeout/2)
		err := c.Get().AbsPath("/version").Do(actx).Error()
		acancel()
		var se apierrors.APIStatus
		switch {
		case err == nil:
			return nil
		case errors.As(err, &se) && se.Status().Code == http.StatusUnauthorized:
			return fmt.Errorf("kube-apiserver %s refused the relay's credentials (401): %w", host, err)
		case errors.As(err, &se):
			return nil // it answered
		}
		last = err
		if attempt == 1 {
			logger.Warn("kube-apiserver not reachable yet; retrying", "host", host, "err", err)
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return nil // stopping: not the apiserver's fault
			}
			if errors.Is(last, context.DeadlineExceeded) || errors.Is(last, context.Canceled) {
				last = fmt.Errorf("no answer within %s", timeout)
			}
			return fmt.Errorf("cannot reach the kube-apiserver at %s (--kubeconfig, --kube-apiserver or the in-cluster config): %w", host, last)
		case <-time.After(time.Second):
		}
	}
}
