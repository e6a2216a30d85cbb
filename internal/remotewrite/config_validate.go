package remotewrite

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// validate checks one endpoint; its errors name the endpoint and field.
func (e *EndpointConfig) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, e.fieldError(field, format, args...))
	}
	if e.URL == "" {
		bad("url", "required")
	} else if u, err := url.Parse(e.URL); err != nil {
		bad("url", "%v", err)
	} else {
		switch {
		case u.Scheme != "http" && u.Scheme != "https":
			bad("url", "scheme must be http or https, got %q", u.Scheme)
		case u.Host == "":
			bad("url", "has no host")
		case u.User != nil:
			bad("url", "must not carry credentials; use basic_auth or bearer_token_file")
		case u.Fragment != "":
			bad("url", "must not have a fragment")
		}
		if u.Scheme == "http" && e.TLS.isSet() {
			bad("tls", "TLS settings are given but the URL uses http")
		}
	}
	if strings.TrimSpace(e.Name) != e.Name {
		bad("name", "must not start or end with white space")
	}
	for k, v := range e.Headers {
		if err := validateHeader(k, v); err != nil {
			bad("headers", "%v", err)
		}
	}
	if e.BearerTokenFile != "" {
		if e.BasicAuth.Username != "" || e.BasicAuth.PasswordFile != "" {
			bad("bearer_token_file", "cannot be combined with basic auth")
		}
		if _, err := readSecretFile(e.BearerTokenFile); err != nil {
			bad("bearer_token_file", "%v", err)
		}
	}
	switch {
	case e.BasicAuth.Username == "" && e.BasicAuth.PasswordFile != "":
		bad("basic_auth.username", "required when basic_auth.password_file is set")
	case e.BasicAuth.Username != "" && e.BasicAuth.PasswordFile == "":
		bad("basic_auth.password_file", "required when basic_auth.username is set")
	case e.BasicAuth.PasswordFile != "":
		if strings.ContainsRune(e.BasicAuth.Username, ':') {
			bad("basic_auth.username", "must not contain ':'")
		}
		if _, err := readSecretFile(e.BasicAuth.PasswordFile); err != nil {
			bad("basic_auth.password_file", "%v", err)
		}
	}
	if _, err := e.TLS.build(); err != nil {
		var fe *tlsFieldError
		if errors.As(err, &fe) {
			bad(fe.field, "%v", fe.err)
		} else {
			bad("tls", "%v", err)
		}
	}
	if e.Timeout <= 0 {
		bad("timeout", "must be positive, got %s", e.Timeout)
	}
	errs = append(errs, e.validateQueue()...)
	if e.Prom != nil {
		errs = append(errs, e.validateProm()...)
	}
	errs = append(errs, e.validateTenant()...)
	return errors.Join(errs...)
}

func (e *EndpointConfig) validateQueue() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, e.fieldError(field, format, args...))
	}
	q := e.Queue
	if q.Shards < 1 || q.Shards > maxShards {
		bad("queue.shards", "must be between 1 and %d, got %d", maxShards, q.Shards)
	}
	if q.Capacity < 1 {
		bad("queue.capacity", "must be positive, got %d", q.Capacity)
	} else if q.Shards >= 1 && q.Capacity < q.Shards {
		bad("queue.capacity", "must be at least the number of shards (%d), got %d", q.Shards, q.Capacity)
	}
	if q.MaxSamplesPerSend < 1 || q.MaxSamplesPerSend > maxSamplesPerSendCap {
		bad("queue.max_samples_per_send", "must be between 1 and %d, got %d", maxSamplesPerSendCap, q.MaxSamplesPerSend)
	}
	if q.BatchSendDeadline <= 0 {
		bad("queue.batch_send_deadline", "must be positive, got %s", q.BatchSendDeadline)
	}
	if q.Dir != "" && q.MaxBytes != 0 && q.MaxBytes < minQueueMaxBytes {
		bad("queue_max_bytes", "must be at least %d (16 MiB) when set, got %d", minQueueMaxBytes, q.MaxBytes)
	}
	if q.MaxBytes < 0 {
		bad("queue_max_bytes", "must not be negative, got %d", q.MaxBytes)
	}
	if q.SyncInterval < 0 {
		bad("queue_fsync_interval", "must not be negative, got %s", q.SyncInterval)
	}
	if q.MinBackoff <= 0 {
		bad("queue.min_backoff", "must be positive, got %s", q.MinBackoff)
	}
	if q.MaxBackoff < q.MinBackoff {
		bad("queue.max_backoff", "must be at least min_backoff (%s), got %s", q.MinBackoff, q.MaxBackoff)
	}
	return errs
}

// reservedHeaders are set by the relay (the protocol's own headers) or by
// Go's HTTP client; a user-supplied value would either be ignored or break
// the protocol, so configuring one is an error.
var reservedHeaders = []string{
	"Accept-Encoding",
	"Authorization",
	"Connection",
	"Content-Encoding",
	"Content-Length",
	"Content-Type",
	"Host",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
	"User-Agent",
	"Www-Authenticate",
	"X-Prometheus-Remote-Write-Version",
}

func validateHeader(name, value string) error {
	if name == "" {
		return errors.New("empty header name")
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return fmt.Errorf("header name %q has an invalid character %q", name, name[i])
		}
	}
	canonical := http.CanonicalHeaderKey(name)
	if slices.Contains(reservedHeaders, canonical) {
		if canonical == "Authorization" {
			return fmt.Errorf("header %q cannot be set; use bearer_token_file or basic_auth", name)
		}
		return fmt.Errorf("header %q is set by the relay and cannot be overridden", name)
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < ' ' && c != '\t' || c == 0x7f {
			return fmt.Errorf("header %q has a control character in its value", name)
		}
	}
	return nil
}

// isTokenChar reports whether c may appear in an HTTP header name (RFC 9110 token).
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
