package main

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/remotewrite"
)

// remoteWriteOptions are the remote-write flags of `run`, and the
// configuration built from them (and the --remote-write-config file) once, by
// Validate.
//
// Endpoints come from two places. Each URLs entry becomes one endpoint with
// all the flag settings (Endpoint, Headers). ConfigFile lists more endpoints,
// each with its own settings; such an endpoint inherits the flags' timeout and
// queue settings where it leaves them out, but never their credentials, TLS
// files or headers, so that a secret meant for one receiver is not sent to
// another.
type remoteWriteOptions struct {
	URLs       []string
	ConfigFile string
	// Endpoint holds the per-endpoint flag settings; its URL and Name are not
	// used.
	Endpoint remotewrite.EndpointConfig
	// Headers are Name=value pairs for the URLs endpoints.
	Headers []string
	// ExternalLabels are name=value pairs.
	ExternalLabels  []string
	ShutdownTimeout time.Duration
	// Prom is --config.file (config_file.go).
	Prom configFileOptions

	// Set by Validate.
	cfg      remotewrite.Config
	external []model.Label
}

func defaultRemoteWriteOptions() remoteWriteOptions {
	return remoteWriteOptions{
		Endpoint: remotewrite.EndpointConfig{
			Timeout: remotewrite.DefaultTimeout,
			Queue:   remotewrite.DefaultQueueConfig(),
		},
		ShutdownTimeout: remotewrite.DefaultShutdownTimeout,
	}
}

// AddFlags registers the remote-write flags, with remotewrite's defaults (a
// zero remoteWriteOptions is fine).
func (o *remoteWriteOptions) AddFlags(fs *pflag.FlagSet) {
	*o = defaultRemoteWriteOptions()
	e, q := &o.Endpoint, &o.Endpoint.Queue
	fs.StringArrayVar(&o.URLs, "remote-write-url", o.URLs,
		"Remote-write endpoint URL, e.g. https://mimir/api/v1/push (repeatable). Each URL gets its own queue and the --remote-write-* settings below. No URL and no --remote-write-config disables remote write.")
	fs.StringVar(&o.ConfigFile, "remote-write-config", o.ConfigFile,
		"YAML file listing more endpoints, each with its own url, name, headers, bearer_token_file, basic_auth, tls, timeout and queue settings. Timeout and queue settings left out default to the flags; credentials, TLS and headers do not.")
	fs.DurationVar(&e.Timeout, "remote-write-timeout", e.Timeout, "Timeout of one remote-write request.")
	fs.StringVar(&e.BearerTokenFile, "remote-write-bearer-token-file", e.BearerTokenFile,
		"File holding a bearer token for the --remote-write-url endpoints (re-read periodically).")
	fs.StringVar(&e.BasicAuth.Username, "remote-write-basic-auth-username", e.BasicAuth.Username,
		"Basic-auth user name for the --remote-write-url endpoints.")
	fs.StringVar(&e.BasicAuth.PasswordFile, "remote-write-basic-auth-password-file", e.BasicAuth.PasswordFile,
		"File holding the basic-auth password (re-read periodically).")
	fs.StringVar(&e.TLS.CAFile, "remote-write-ca-file", e.TLS.CAFile,
		"PEM CA bundle to verify the --remote-write-url endpoints (default: system roots).")
	fs.StringVar(&e.TLS.CertFile, "remote-write-cert-file", e.TLS.CertFile, "Client certificate for mutual TLS.")
	fs.StringVar(&e.TLS.KeyFile, "remote-write-key-file", e.TLS.KeyFile, "Client certificate key for mutual TLS.")
	fs.BoolVar(&e.TLS.InsecureSkipVerify, "remote-write-insecure-skip-verify", e.TLS.InsecureSkipVerify,
		"Do not verify the --remote-write-url endpoints' certificates (testing only).")
	fs.StringArrayVar(&o.Headers, "remote-write-header", o.Headers,
		"Name=value header sent to the --remote-write-url endpoints, e.g. X-Scope-OrgID=team-a (repeatable). Protocol headers and Authorization cannot be set.")
	fs.StringArrayVar(&o.ExternalLabels, "external-label", o.ExternalLabels,
		"name=value label added to every series sent, unless the series has that label already (repeatable). For Mimir/Cortex HA dedup: --external-label cluster=NAME --external-label __replica__=$(POD_NAME).")
	fs.IntVar(&q.MaxSamplesPerSend, "max-samples-per-send", q.MaxSamplesPerSend, "Most samples in one remote-write request.")
	fs.DurationVar(&q.BatchSendDeadline, "batch-send-deadline", q.BatchSendDeadline,
		"Longest time a sample waits for its batch to fill before it is sent.")
	fs.DurationVar(&q.MinBackoff, "min-backoff", q.MinBackoff, "First wait before retrying a failed request; doubles per retry.")
	fs.DurationVar(&q.MaxBackoff, "max-backoff", q.MaxBackoff, "Longest wait between retries (a receiver's Retry-After is honoured beyond it).")
	fs.IntVar(&q.Capacity, "remote-write-queue-capacity", q.Capacity,
		"Samples buffered per endpoint (32 bytes each), split over its shards; when full the oldest are dropped.")
	fs.IntVar(&q.Shards, "remote-write-shards", q.Shards,
		"Concurrent senders per endpoint; each series always uses the same one, which keeps its samples in order. Default: the CPUs the process may use (GOMAXPROCS), at most 4.")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout,
		"On shutdown, how long to keep sending buffered samples before giving up on them.")
	o.Prom.AddFlags(fs)
	o.addQueueFlags(fs)
	o.addTenantFlags(fs)
}

// Validate parses the flags, reads the --remote-write-config file and
// validates the configuration (reading the credential and TLS files it names),
// once; Config and ExternalLabels then return the result.
func (o *remoteWriteOptions) Validate() error {
	ext, err := parseExternalLabels(o.ExternalLabels)
	if err != nil {
		return err
	}
	headers, err := parseHeaders(o.Headers)
	if err != nil {
		return err
	}
	cfg := remotewrite.Config{ShutdownTimeout: o.ShutdownTimeout}
	for i, u := range o.URLs {
		e := o.Endpoint
		e.URL, e.Name = u, ""
		e.Headers = headers
		e.Origin = remotewrite.Origin{Index: i}
		cfg.Endpoints = append(cfg.Endpoints, e)
	}
	if o.ConfigFile != "" {
		eps, err := remotewrite.LoadConfigFile(o.ConfigFile, o.Endpoint)
		if err != nil {
			return fmt.Errorf("--remote-write-config: %w", err)
		}
		cfg.Endpoints = append(cfg.Endpoints, eps...)
	}
	if err := o.Prom.apply(&cfg, &ext, o.Endpoint); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return flagErrors(err)
	}
	o.cfg, o.external = cfg, ext
	return nil
}

// Config is the remote-write configuration Validate built; check Enabled()
// before starting a Writer.
func (o *remoteWriteOptions) Config() remotewrite.Config { return o.cfg }

// externalLabels are the --external-label labels, sorted by name, for the
// relay to add to every series (remote write never sees them as such).
func (o *remoteWriteOptions) externalLabels() []model.Label { return o.external }

// rwFlagNames maps remote-write config-file field names to the flags that
// set them, for endpoints given by --remote-write-url.
var rwFlagNames = map[string]string{
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
	"shutdown_timeout":           "--shutdown-timeout",
	"queue_max_bytes":            "--remote-write-queue-max-bytes",
	"queue_fsync_interval":       "--remote-write-fsync-interval",
}

// flagErrors rewrites remotewrite's field errors about settings given by
// flags to name the flags, as the user wrote them.
func flagErrors(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var errs []error
		for _, e := range j.Unwrap() {
			errs = append(errs, flagErrors(e))
		}
		return errors.Join(errs...)
	}
	var fe *remotewrite.FieldError
	if !errors.As(err, &fe) || fe.Origin.File != "" {
		return err
	}
	name := fe.Field
	if f, ok := rwFlagNames[fe.Field]; ok {
		name = f
	}
	if fe.Endpoint == "" {
		return fmt.Errorf("%s: %w", name, fe.Err)
	}
	return fmt.Errorf("remote write endpoint %q (--remote-write-url #%d): %s: %w", fe.Endpoint, fe.Origin.Index+1, name, fe.Err)
}

// parseExternalLabels parses --external-label values of the form name=value
// and returns them sorted by name.
func parseExternalLabels(args []string) ([]model.Label, error) {
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

// parseHeaders parses --remote-write-header values of the form Name=value.
// Validation of names and values happens in Config.Validate.
func parseHeaders(args []string) (map[string]string, error) {
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
