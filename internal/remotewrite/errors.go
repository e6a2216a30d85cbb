package remotewrite

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// RecoverableError marks a failed send that may succeed if retried: a network
// error, a timeout, a 5xx or a 429. Any other error is final and the batch is
// dropped.
type RecoverableError struct {
	Err error
	// RetryAfter is the wait the receiver asked for (Retry-After), or zero.
	RetryAfter time.Duration
}

func (e *RecoverableError) Error() string { return e.Err.Error() }
func (e *RecoverableError) Unwrap() error { return e.Err }

// HTTPStatusError is a non-2xx response from a receiver.
type HTTPStatusError struct {
	StatusCode int
	// Body is the start of the response body: receivers explain rejections
	// there (out-of-order sample, tenant limits, ...).
	Body string
}

func (e *HTTPStatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("server returned HTTP status %d", e.StatusCode)
	}
	return fmt.Sprintf("server returned HTTP status %d: %s", e.StatusCode, e.Body)
}

// isRecoverable reports whether err is worth retrying, and how long the
// receiver asked to wait.
func isRecoverable(err error) (bool, time.Duration) {
	var re *RecoverableError
	if errors.As(err, &re) {
		return true, re.RetryAfter
	}
	return false, 0
}

// dropReason names the cause of a final failure for the dropped counter and
// the log limiter: "http_400", "http_413", ... or "send_error".
func dropReason(err error) string {
	var se *HTTPStatusError
	if errors.As(err, &se) {
		return "http_" + strconv.Itoa(se.StatusCode)
	}
	return "send_error"
}
