package remotewrite

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"
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
	minQueueMaxBytes     = 16 << 20
)

// Config configures a Writer.
type Config struct {
	// Endpoints are the receivers; each gets its own queue. None means remote
	// write is disabled.
	Endpoints []EndpointConfig
	// ShutdownTimeout bounds how long Run keeps sending what it holds after its
	// context is cancelled.
	ShutdownTimeout time.Duration

	// validated is set by a successful Validate, so that New does not read
	// the credential and TLS files a second time.
	validated bool
	// deferDiskOpen makes New leave the disk queues closed until Run: a
	// reload's new Writer runs only after the old one released the directory.
	deferDiskOpen bool
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
	// Prom, when set, holds the settings of an endpoint written in
	// Prometheus's remote_write syntax (promconfig.go).
	Prom *PromSettings
	// Tenant routes series to tenants by a label (tenant_config.go).
	Tenant TenantConfig

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

	// Dir, when set, puts the endpoint's requests through an on-disk queue
	// in Dir/QueueSubdir(name) (see diskbacked.go and docs/disk-queue.md);
	// empty keeps the memory queue only.
	Dir string
	// MaxBytes bounds the disk queue's files; when full the oldest data is
	// dropped (counted). Zero means diskqueue.DefaultMaxBytes.
	MaxBytes int64
	// SyncInterval is how often the disk queue is fsynced; an OS crash or
	// power loss loses at most this. Zero means diskqueue.DefaultSyncInterval.
	SyncInterval time.Duration
}

// maxDefaultShards caps DefaultShards.
const maxDefaultShards = 4

// DefaultShards is the shard count of an endpoint that sets none: one
// sender per CPU the process may use (GOMAXPROCS, which follows the
// container's CPU limit), at most 4. A shard encodes on a CPU, so more
// shards than CPUs add no encoding throughput, while each holds its own
// ring of samples waiting for a full batch, a batch, an encoder buffer and
// label-table state: about 2 MiB at 50 nodes (README, "Remote-write
// shards"). More help only against a slow receiver's latency.
func DefaultShards() int { return min(max(runtime.GOMAXPROCS(0), 1), maxDefaultShards) }

// DefaultQueueConfig returns the default queue settings.
func DefaultQueueConfig() QueueConfig {
	return QueueConfig{
		Capacity:          DefaultQueueCapacity,
		Shards:            DefaultShards(),
		MaxSamplesPerSend: DefaultMaxSamplesPerSend,
		BatchSendDeadline: DefaultBatchSendDeadline,
		MinBackoff:        DefaultMinBackoff,
		MaxBackoff:        DefaultMaxBackoff,
	}
}

// Origin records where an endpoint was configured so that errors can name the
// setting the user actually wrote: a flag or a config file field.
type Origin struct {
	// File is the config file path; empty for endpoints configured otherwise.
	File string
	// Index is the position in the file's endpoints list, or in
	// Config.Endpoints for endpoints configured otherwise.
	Index int
	// Line is the entry's line in File (0: unknown); List names the file's
	// list ("remote_write" for Prometheus's syntax; "endpoints" when empty).
	Line int
	List string
}

// FieldError is a problem with one setting: of one endpoint, or (Endpoint
// empty) of the whole Config. Field is the config-file name of the setting
// (e.g. "tls.ca_file", "queue.shards", "shutdown_timeout"), so that a
// caller configuring by other means (flags) can name its own setting.
type FieldError struct {
	Endpoint string // the endpoint's name, or its URL without credentials
	Origin   Origin
	Field    string
	Err      error
}

func (e *FieldError) Error() string {
	if e.Endpoint == "" && e.Origin.File == "" {
		return fmt.Sprintf("remote write: %s: %v", e.Field, e.Err)
	}
	list, field := "endpoints", e.Field
	if e.Origin.List == "remote_write" {
		list, field = e.Origin.List, promFieldName(field)
	}
	where := fmt.Sprintf("%s[%d]", list, e.Origin.Index)
	if e.Origin.File != "" {
		where = e.Origin.File + e.Origin.lineSuffix() + ": " + where
	}
	return fmt.Sprintf("remote write endpoint %q (%s): %s: %v", e.Endpoint, where, field, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// fieldError names the endpoint and the field a problem is in.
func (e *EndpointConfig) fieldError(field string, format string, args ...any) error {
	id := e.Name
	if id == "" {
		id = redactURL(e.URL)
	}
	return &FieldError{Endpoint: id, Origin: e.Origin, Field: field, Err: fmt.Errorf(format, args...)}
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
	if c.ShutdownTimeout < 0 {
		errs = append(errs, &FieldError{Field: "shutdown_timeout", Err: fmt.Errorf("must not be negative, got %s", c.ShutdownTimeout)})
	}
	c.validated = len(errs) == 0
	return errors.Join(errs...)
}

func (e *EndpointConfig) effectiveName() string {
	if e.Name != "" {
		return e.Name
	}
	return redactURL(e.URL)
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
// newline that editors and secrets created from files leave behind.
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
