package main

import (
	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/remotewrite"
)

// remoteWriteOptions are the remote-write flags of `run`. Parsing and
// validation live in internal/remotewrite (Options.Config); this file only binds
// flags to its fields.
type remoteWriteOptions struct {
	remotewrite.Options
}

// AddFlags registers the remote-write flags, with remotewrite's defaults (a
// zero remoteWriteOptions is fine).
func (o *remoteWriteOptions) AddFlags(fs *pflag.FlagSet) {
	o.Options = remotewrite.DefaultOptions()
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
		"Samples buffered per endpoint (24 bytes each), split over its shards; when full the oldest are dropped.")
	fs.IntVar(&q.Shards, "remote-write-shards", q.Shards,
		"Concurrent senders per endpoint; each series always uses the same one, which keeps its samples in order.")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout,
		"On shutdown, how long to keep sending buffered samples before giving up on them.")
}

// Validate checks the flags and the files they name.
func (o *remoteWriteOptions) Validate() error {
	_, err := o.Config()
	return err
}

// Config returns the validated remote-write configuration; check Enabled()
// before starting a Writer.
func (o *remoteWriteOptions) Config() (remotewrite.Config, error) {
	return o.Options.Config()
}
