package remotewrite

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"sigs.k8s.io/yaml"
)

// fileConfig is the schema of a remote-write config file:
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
//	    queue_dir: /var/lib/kubelet-meta-proxy/queue
//	    queue_max_bytes: 1073741824
//	    tenant: {label: team, header: X-Scope-OrgID, missing: default, default: platform, remove_label: false, max_tenants: 1000, idle_timeout: 10m}
//
// tenant (tenant_config.go) is the endpoint's own: it is not inherited from
// the --tenant-* flags, which apply to the --remote-write-url endpoints.
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
	// QueueDir and QueueMaxBytes set the endpoint's disk queue (see
	// QueueConfig.Dir); left out, the flags' values apply.
	QueueDir      string      `json:"queue_dir,omitempty"`
	QueueMaxBytes int64       `json:"queue_max_bytes,omitempty"`
	Tenant        *fileTenant `json:"tenant,omitempty"`
}

type fileTenant struct {
	Label       string   `json:"label"`
	Header      string   `json:"header,omitempty"`
	Missing     string   `json:"missing,omitempty"`
	Default     string   `json:"default,omitempty"`
	RemoveLabel bool     `json:"remove_label,omitempty"`
	MaxTenants  int      `json:"max_tenants,omitempty"`
	IdleTimeout Duration `json:"idle_timeout,omitempty"`
}

type fileQueue struct {
	Capacity          int      `json:"capacity,omitempty"`
	Shards            int      `json:"shards,omitempty"`
	MaxSamplesPerSend int      `json:"max_samples_per_send,omitempty"`
	BatchSendDeadline Duration `json:"batch_send_deadline,omitempty"`
	MinBackoff        Duration `json:"min_backoff,omitempty"`
	MaxBackoff        Duration `json:"max_backoff,omitempty"`
}

// LoadConfigFile reads a remote-write config file (once, at start-up). Timeout and queue
// settings it leaves out (or sets to zero) are taken from defaults. The
// returned endpoints are not validated yet; Config.Validate does that.
func LoadConfigFile(path string, defaults EndpointConfig) ([]EndpointConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err // os.ReadFile names the file
	}
	eps, err := parseConfigFile(b, path, defaults)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
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
		setIf(&e.Queue.Dir, f.QueueDir)
		setIf(&e.Queue.MaxBytes, f.QueueMaxBytes)
		if t := f.Tenant; t != nil {
			e.Tenant = TenantConfig{Label: t.Label, Header: t.Header, Missing: t.Missing, Default: t.Default,
				RemoveLabel: t.RemoveLabel, MaxTenants: t.MaxTenants, IdleTimeout: time.Duration(t.IdleTimeout)}
			if e.Tenant.Label == "" {
				return nil, e.fieldError("tenant.label", "required in a tenant section")
			}
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
