package remotewrite

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"sigs.k8s.io/yaml"
)

// Options are the remote-write settings as the command line gives them. The
// CLI binds its flags to these fields; Config turns them into a validated
// Config.
//
// Endpoints come from two places. Each URLs entry becomes one endpoint with
// all the flag settings (Endpoint, Headers). ConfigFile lists more endpoints,
// each with its own settings; such an endpoint inherits the flags' timeout and
// queue settings where it leaves them out, but never their credentials, TLS
// files or headers, so that a secret meant for one receiver is not sent to
// another.
type Options struct {
	URLs       []string
	ConfigFile string
	// Endpoint holds the per-endpoint flag settings; its URL and Name are not
	// used.
	Endpoint EndpointConfig
	// Headers are Name=value pairs for the URLs endpoints.
	Headers []string
	// ExternalLabels are name=value pairs.
	ExternalLabels  []string
	ShutdownTimeout time.Duration
}

// DefaultOptions returns the options with every default set.
func DefaultOptions() Options {
	return Options{
		Endpoint: EndpointConfig{
			Timeout: DefaultTimeout,
			Queue:   DefaultQueueConfig(),
		},
		ShutdownTimeout: DefaultShutdownTimeout,
	}
}

// Config builds and validates the Config the options describe.
func (o Options) Config() (Config, error) {
	ext, err := ParseExternalLabels(o.ExternalLabels)
	if err != nil {
		return Config{}, err
	}
	headers, err := ParseHeaders(o.Headers)
	if err != nil {
		return Config{}, err
	}
	cfg := Config{ExternalLabels: ext, ShutdownTimeout: o.ShutdownTimeout}
	for i, u := range o.URLs {
		e := o.Endpoint
		e.URL, e.Name = u, ""
		e.Headers = headers
		e.Origin = Origin{Index: i}
		cfg.Endpoints = append(cfg.Endpoints, e)
	}
	if o.ConfigFile != "" {
		eps, err := LoadConfigFile(o.ConfigFile, o.Endpoint)
		if err != nil {
			return Config{}, err
		}
		cfg.Endpoints = append(cfg.Endpoints, eps...)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// fileConfig is the schema of --remote-write-config:
//
//	endpoints:
//	  - url: https://mimir.example/api/v1/push
//	    name: mimir-team-a
//	    headers: {X-Scope-OrgID: team-a}
//	    bearer_token_file: /var/run/secrets/mimir/token
//	    basic_auth: {username: relay, password_file: /etc/mimir/password}
//	    tls: {ca_file: /etc/mimir/ca.crt, cert_file: /etc/mimir/tls.crt, key_file: /etc/mimir/tls.key, insecure_skip_verify: false}
//	    timeout: 30s
//	    queue: {capacity: 1000000, shards: 4, max_samples_per_send: 10000, batch_send_deadline: 5s, min_backoff: 30ms, max_backoff: 5s}
type fileConfig struct {
	Endpoints []fileEndpoint `json:"endpoints"`
}

type fileEndpoint struct {
	URL             string            `json:"url"`
	Name            string            `json:"name,omitempty"`
	Headers         map[string]string `json:"headers,omitempty"`
	BearerTokenFile string            `json:"bearer_token_file,omitempty"`
	BasicAuth       *struct {
		Username     string `json:"username"`
		PasswordFile string `json:"password_file"`
	} `json:"basic_auth,omitempty"`
	TLS *struct {
		CAFile             string `json:"ca_file,omitempty"`
		CertFile           string `json:"cert_file,omitempty"`
		KeyFile            string `json:"key_file,omitempty"`
		InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
	} `json:"tls,omitempty"`
	Timeout Duration   `json:"timeout,omitempty"`
	Queue   *fileQueue `json:"queue,omitempty"`
}

type fileQueue struct {
	Capacity          int      `json:"capacity,omitempty"`
	Shards            int      `json:"shards,omitempty"`
	MaxSamplesPerSend int      `json:"max_samples_per_send,omitempty"`
	BatchSendDeadline Duration `json:"batch_send_deadline,omitempty"`
	MinBackoff        Duration `json:"min_backoff,omitempty"`
	MaxBackoff        Duration `json:"max_backoff,omitempty"`
}

// LoadConfigFile reads a --remote-write-config file. Timeout and queue
// settings it leaves out (or sets to zero) are taken from defaults. The
// returned endpoints are not validated yet; Config.Validate does that.
func LoadConfigFile(path string, defaults EndpointConfig) ([]EndpointConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--remote-write-config: %w", err)
	}
	eps, err := parseConfigFile(b, path, defaults)
	if err != nil {
		return nil, fmt.Errorf("--remote-write-config %s: %w", path, err)
	}
	return eps, nil
}

func parseConfigFile(b []byte, path string, defaults EndpointConfig) ([]EndpointConfig, error) {
	var fc fileConfig
	// Strict, so that a misspelt field is an error instead of a silently
	// missing setting.
	if err := yaml.UnmarshalStrict(b, &fc); err != nil {
		return nil, err
	}
	if len(fc.Endpoints) == 0 {
		return nil, errors.New("endpoints: the file lists no endpoint")
	}
	eps := make([]EndpointConfig, 0, len(fc.Endpoints))
	for i, f := range fc.Endpoints {
		e := EndpointConfig{
			URL:             f.URL,
			Name:            f.Name,
			BearerTokenFile: f.BearerTokenFile,
			Timeout:         defaults.Timeout,
			Queue:           defaults.Queue,
			Origin:          Origin{File: path, Index: i},
		}
		if len(f.Headers) > 0 {
			e.Headers = make(map[string]string, len(f.Headers))
			for k, v := range f.Headers {
				ck := http.CanonicalHeaderKey(k)
				if _, dup := e.Headers[ck]; dup {
					return nil, e.fieldError("headers", "%q is given more than once (header names are case-insensitive)", ck)
				}
				e.Headers[ck] = v
			}
		}
		if f.BasicAuth != nil {
			e.BasicAuth = BasicAuth{Username: f.BasicAuth.Username, PasswordFile: f.BasicAuth.PasswordFile}
		}
		if f.TLS != nil {
			e.TLS = TLSConfig{CAFile: f.TLS.CAFile, CertFile: f.TLS.CertFile, KeyFile: f.TLS.KeyFile, InsecureSkipVerify: f.TLS.InsecureSkipVerify}
		}
		if f.Timeout != 0 {
			e.Timeout = time.Duration(f.Timeout)
		}
		if q := f.Queue; q != nil {
			setIf(&e.Queue.Capacity, q.Capacity)
			setIf(&e.Queue.Shards, q.Shards)
			setIf(&e.Queue.MaxSamplesPerSend, q.MaxSamplesPerSend)
			setIf(&e.Queue.BatchSendDeadline, time.Duration(q.BatchSendDeadline))
			setIf(&e.Queue.MinBackoff, time.Duration(q.MinBackoff))
			setIf(&e.Queue.MaxBackoff, time.Duration(q.MaxBackoff))
		}
		eps = append(eps, e)
	}
	return eps, nil
}

// setIf sets *dst to v unless v is the zero value (left out of the file).
func setIf[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}
