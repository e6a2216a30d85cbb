package remotewrite

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// Defaults of the remote-write settings. The command line uses them as flag
// defaults; the config file inherits the flags' values for what it leaves out.
const (
	DefaultTimeout = 30 * time.Second
	// DefaultMaxSamplesPerSend is vmagent's block size rather than
	// Prometheus's 2000: the encoder copies labels already written in the
	// same request, so the larger the request the fewer labels go out in
	// full. In the 50x30 load benchmark 10000 took the relay from 1.34 to
	// 1.12 CPU-s per million samples and from 49 to 41 wire bytes a
	// sample; a request is then about 0.4 MB on the wire, 4-5 MB decoded,
	// well under Mimir's and Thanos's default request limits.
	DefaultMaxSamplesPerSend = 10000
	DefaultBatchSendDeadline = 5 * time.Second
	DefaultMinBackoff        = 30 * time.Millisecond
	DefaultMaxBackoff        = 5 * time.Second
	// DefaultQueueCapacity is per URL, in samples: 32 MiB of buffered samples
	// (a model.Sample is 32 bytes), a few seconds to minutes of outage depending on
	// the cluster's sample rate.
	DefaultQueueCapacity = 1_000_000
	DefaultShards        = 4
	// DefaultShutdownTimeout leaves room, inside Kubernetes's default 30s
	// terminationGracePeriodSeconds, for the rest of the relay to stop before
	// the kubelet sends SIGKILL.
	DefaultShutdownTimeout = 20 * time.Second
)

// Bounds that keep a mistyped setting from costing unbounded memory or
// goroutines.
const (
	maxShards            = 1024
	maxSamplesPerSendCap = 1_000_000
)

// Config configures a Writer.
type Config struct {
	// Endpoints are the receivers; each gets its own queue. None means remote
	// write is disabled.
	Endpoints []EndpointConfig
	// ExternalLabels are added to every series, unless the series has a
	// label of the same name (the series' own label wins). The Writer does
	// not add them: the relay does when it builds a series (enrich.Builder),
	// so that /metrics shows what every endpoint gets, as /federate does. For Mimir/Cortex HA
	// deduplication set a cluster and a replica label here (for example
	// cluster=prod and __replica__=$(POD_NAME)): every series, and so every
	// request, then carries exactly one cluster/replica pair.
	ExternalLabels []model.Label
	// ShutdownTimeout bounds how long Run keeps sending what it holds after its
	// context is cancelled.
	ShutdownTimeout time.Duration
}

// Enabled reports whether there is any receiver to write to.
func (c Config) Enabled() bool { return len(c.Endpoints) > 0 }

// EndpointConfig configures one receiver.
type EndpointConfig struct {
	// URL is the receiver's remote-write endpoint, e.g.
	// https://mimir.example/api/v1/push.
	URL string
	// Name identifies the endpoint in metrics (remote_name) and logs; it
	// defaults to the URL and must be unique.
	Name string
	// Headers are sent with every request, e.g. X-Scope-OrgID. They cannot
	// replace the headers the protocol defines, nor Authorization.
	Headers map[string]string
	// BearerTokenFile holds a token sent as "Authorization: Bearer". The file
	// is re-read periodically so rotated (projected) tokens are picked up.
	BearerTokenFile string
	// BasicAuth, when Username is set, sends HTTP basic auth.
	BasicAuth BasicAuth
	TLS       TLSConfig
	// Timeout bounds one HTTP request, including reading the response.
	Timeout time.Duration
	Queue   QueueConfig

	// Origin says where the endpoint was configured, for error messages.
	Origin Origin
}

// BasicAuth configures HTTP basic authentication.
type BasicAuth struct {
	Username string
	// PasswordFile holds the password; re-read periodically like tokens.
	PasswordFile string
}

// TLSConfig configures the client side of TLS to a receiver.
type TLSConfig struct {
	CAFile             string // PEM CA bundle; the system roots when empty
	CertFile, KeyFile  string // client certificate, for mutual TLS
	InsecureSkipVerify bool
}

func (t TLSConfig) isSet() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.InsecureSkipVerify
}

// QueueConfig tunes one endpoint's queue.
type QueueConfig struct {
	// Capacity is the most samples buffered for the endpoint, split evenly
	// over its shards. When full, the oldest samples are dropped. Batches being
	// sent are held on top of it (at most Shards*MaxSamplesPerSend samples).
	Capacity int
	// Shards is the number of concurrent senders. A series always goes to the
	// same shard, which is what keeps its samples in order.
	Shards int
	// MaxSamplesPerSend caps the samples in one request.
	MaxSamplesPerSend int
	// BatchSendDeadline is the longest a shard waits for a full batch.
	BatchSendDeadline time.Duration
	// MinBackoff and MaxBackoff bound the (exponential, jittered) wait
	// between retries of a failed request.
	MinBackoff, MaxBackoff time.Duration
}

// DefaultQueueConfig returns the default queue settings.
func DefaultQueueConfig() QueueConfig {
	return QueueConfig{
		Capacity:          DefaultQueueCapacity,
		Shards:            DefaultShards,
		MaxSamplesPerSend: DefaultMaxSamplesPerSend,
		BatchSendDeadline: DefaultBatchSendDeadline,
		MinBackoff:        DefaultMinBackoff,
		MaxBackoff:        DefaultMaxBackoff,
	}
}

// Origin records where an endpoint was configured so that errors can name the
// setting the user actually wrote: a flag or a config file field.
type Origin struct {
	// File is the config file path; empty for endpoints given by flags.
	File string
	// Index is the position in the file's endpoints list, or among the
	// --remote-write-url flags.
	Index int
}

// flagNames maps config-file field names to the flags that set them.
var flagNames = map[string]string{
	"url":                        "--remote-write-url",
	"tls":                        "--remote-write-ca-file/--remote-write-cert-file/--remote-write-key-file/--remote-write-insecure-skip-verify",
	"name":                       "--remote-write-url",
	"headers":                    "--remote-write-header",
	"bearer_token_file":          "--remote-write-bearer-token-file",
	"basic_auth.username":        "--remote-write-basic-auth-username",
	"basic_auth.password_file":   "--remote-write-basic-auth-password-file",
	"tls.ca_file":                "--remote-write-ca-file",
	"tls.cert_file":              "--remote-write-cert-file",
	"tls.key_file":               "--remote-write-key-file",
	"tls.insecure_skip_verify":   "--remote-write-insecure-skip-verify",
	"timeout":                    "--remote-write-timeout",
	"queue.capacity":             "--remote-write-queue-capacity",
	"queue.shards":               "--remote-write-shards",
	"queue.max_samples_per_send": "--max-samples-per-send",
	"queue.batch_send_deadline":  "--batch-send-deadline",
	"queue.min_backoff":          "--min-backoff",
	"queue.max_backoff":          "--max-backoff",
}

// fieldError names the endpoint and the field (or flag) a problem is in.
func (e *EndpointConfig) fieldError(field string, format string, args ...any) error {
	where := fmt.Sprintf("--remote-write-url #%d", e.Origin.Index+1)
	name := field
	if e.Origin.File != "" {
		where = fmt.Sprintf("%s: endpoints[%d]", e.Origin.File, e.Origin.Index)
	} else if f, ok := flagNames[field]; ok {
		name = f
	}
	id := e.Name
	if id == "" {
		id = redactURL(e.URL)
	}
	return fmt.Errorf("remote write endpoint %q (%s): %s: %s", id, where, name, fmt.Sprintf(format, args...))
}

// Validate checks the whole configuration, reading the credential and TLS
// files once so that a typo fails at startup rather than at the first send.
func (c *Config) Validate() error {
	var errs []error
	names := map[string]int{}
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		if err := e.validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		name := e.effectiveName()
		if j, dup := names[name]; dup {
			errs = append(errs, e.fieldError("name", "%q is also the name of endpoint #%d; give each endpoint a distinct name (endpoints default to their URL as name)", name, j+1))
			continue
		}
		names[name] = i
	}
	if err := validateExternalLabels(c.ExternalLabels); err != nil {
		errs = append(errs, err)
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout: must not be negative, got %s", c.ShutdownTimeout))
	}
	return errors.Join(errs...)
}

func (e *EndpointConfig) effectiveName() string {
	if e.Name != "" {
		return e.Name
	}
	return redactURL(e.URL)
}

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

type tlsFieldError struct {
	field string
	err   error
}

func (e *tlsFieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *tlsFieldError) Unwrap() error { return e.err }

// build returns the tls.Config for t, loading its files.
func (t TLSConfig) build() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // explicitly requested by the user
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, &tlsFieldError{"tls.ca_file", err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &tlsFieldError{"tls.ca_file", fmt.Errorf("%s holds no PEM certificate", t.CAFile)}
		}
		cfg.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return nil, &tlsFieldError{"tls.key_file", errors.New("required when tls.cert_file is set")}
	case t.CertFile == "" && t.KeyFile != "":
		return nil, &tlsFieldError{"tls.cert_file", errors.New("required when tls.key_file is set")}
	case t.CertFile != "":
		// Loaded per handshake so that renewed certificates (cert-manager)
		// are used without a restart; loaded once here to fail early.
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			return nil, &tlsFieldError{"tls.cert_file", err}
		}
		certFile, keyFile := t.CertFile, t.KeyFile
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("loading client certificate: %w", err)
			}
			return &c, nil
		}
	}
	return cfg, nil
}

// readSecretFile reads a token or password file, trimming the trailing
// newline editors and `kubectl create secret --from-file` leave behind.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%s holds more than one line", path)
	}
	return s, nil
}

// redactURL returns u without credentials or query, fit for logs and metric
// labels.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid URL>"
	}
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	return u.String()
}

// ParseExternalLabels parses --external-label values of the form name=value
// and returns them sorted by name.
func ParseExternalLabels(args []string) ([]model.Label, error) {
	ls := make([]model.Label, 0, len(args))
	for _, a := range args {
		name, value, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("--external-label %q: want name=value", a)
		}
		ls = append(ls, model.Label{Name: strings.TrimSpace(name), Value: value})
	}
	slices.SortStableFunc(ls, func(a, b model.Label) int { return strings.Compare(a.Name, b.Name) })
	if err := validateExternalLabels(ls); err != nil {
		return nil, err
	}
	return ls, nil
}

func validateExternalLabels(ls []model.Label) error {
	seen := make(map[string]bool, len(ls))
	for _, l := range ls {
		switch {
		case !model.IsValidLabelName(l.Name):
			return fmt.Errorf("--external-label %q: invalid label name (want [a-zA-Z_][a-zA-Z0-9_]*)", l.Name)
		case l.Name == "__name__":
			return fmt.Errorf("--external-label %q: the metric name cannot be an external label", l.Name)
		case l.Value == "":
			return fmt.Errorf("--external-label %q: empty value (an empty label is no label)", l.Name)
		case seen[l.Name]:
			return fmt.Errorf("--external-label %q: given more than once", l.Name)
		}
		seen[l.Name] = true
	}
	return nil
}

// ParseHeaders parses --remote-write-header values of the form Name=value.
// Validation of names and values happens in Config.Validate.
func ParseHeaders(args []string) (map[string]string, error) {
	if len(args) == 0 {
		return nil, nil
	}
	h := make(map[string]string, len(args))
	for _, a := range args {
		name, value, ok := strings.Cut(a, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("--remote-write-header %q: want Name=value", a)
		}
		if _, dup := h[http.CanonicalHeaderKey(name)]; dup {
			return nil, fmt.Errorf("--remote-write-header %q: header given more than once", name)
		}
		h[http.CanonicalHeaderKey(name)] = value
	}
	return h, nil
}

// Duration is a time.Duration that reads from YAML/JSON as a Go duration
// string ("30s", "1m30s").
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"30s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}
