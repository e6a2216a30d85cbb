package remotewrite

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	commoncfg "github.com/prometheus/common/config"
	commonmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/storage/remote/azuread"
	"github.com/prometheus/prometheus/storage/remote/googleiam"
	"github.com/prometheus/sigv4"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/version"
)

// PromSettings are the settings of an endpoint written in Prometheus's own
// remote_write syntax (--config.file) that the relay's flag settings have no
// equivalent for. When EndpointConfig.Prom is set, BearerTokenFile,
// BasicAuth and TLS are unused: HTTP carries them, and the HTTP client comes
// from prometheus/common/config and Prometheus's sigv4, azuread and
// google_iam round trippers, as in Prometheus.
type PromSettings struct {
	HTTP      commoncfg.HTTPClientConfig
	SigV4     *sigv4.SigV4Config
	AzureAD   *azuread.AzureADConfig
	GoogleIAM *googleiam.Config
	// WriteRelabel is applied to every series before it is queued.
	WriteRelabel []*relabel.Config
	Metadata     MetadataConfig
}

// MetadataConfig is Prometheus's metadata_config: whether and how often the
// metric families' type and help are sent.
type MetadataConfig struct {
	Send              bool
	SendInterval      time.Duration
	MaxSamplesPerSend int
}

// promFieldNames are the remote_write names of the relay's settings, for
// errors about endpoints read from a Prometheus-style file.
var promFieldNames = map[string]string{
	"timeout":                    "remote_timeout",
	"queue.shards":               "queue_config.max_shards",
	"queue.capacity":             "queue_config.capacity (times max_shards)",
	"queue.max_samples_per_send": "queue_config.max_samples_per_send",
	"queue.batch_send_deadline":  "queue_config.batch_send_deadline",
	"queue.min_backoff":          "queue_config.min_backoff",
	"queue.max_backoff":          "queue_config.max_backoff",
	"tls":                        "tls_config",
}

func promFieldName(f string) string {
	if n, ok := promFieldNames[f]; ok {
		return n
	}
	return f
}

// httpClientConfig is the endpoint's HTTP client configuration: its own
// when written in Prometheus's syntax, else the flag settings expressed the
// same way, so that one implementation (prometheus/common/config) handles
// TLS, credential files and their rotation for both.
func (e *EndpointConfig) httpClientConfig() commoncfg.HTTPClientConfig {
	if e.Prom != nil {
		return e.Prom.HTTP
	}
	hc := commoncfg.HTTPClientConfig{
		// A redirect would need the body again; a receiver URL that
		// redirects is a configuration error to surface, not to follow.
		FollowRedirects: false,
		EnableHTTP2:     true,
		TLSConfig: commoncfg.TLSConfig{
			CAFile:             e.TLS.CAFile,
			CertFile:           e.TLS.CertFile,
			KeyFile:            e.TLS.KeyFile,
			InsecureSkipVerify: e.TLS.InsecureSkipVerify,
			MinVersion:         commoncfg.TLSVersion(0x0303), // TLS 1.2
		},
	}
	if e.BearerTokenFile != "" {
		hc.Authorization = &commoncfg.Authorization{Type: "Bearer", CredentialsFile: e.BearerTokenFile}
	}
	if e.BasicAuth.Username != "" {
		hc.BasicAuth = &commoncfg.BasicAuth{Username: e.BasicAuth.Username, PasswordFile: e.BasicAuth.PasswordFile}
	}
	return hc
}

// newHTTPClient builds the endpoint's HTTP client as Prometheus's remote
// write does: prometheus/common/config, then the cloud signers.
func (e *EndpointConfig) newHTTPClient() (*http.Client, error) {
	c, err := commoncfg.NewClientFromConfig(e.httpClientConfig(), "remote_write", commoncfg.WithUserAgent(version.UserAgent()))
	if err != nil {
		return nil, err
	}
	if p := e.Prom; p != nil {
		t := c.Transport
		switch {
		case p.SigV4 != nil:
			t, err = sigv4.NewSigV4RoundTripper(p.SigV4, t)
		case p.AzureAD != nil:
			t, err = azuread.NewAzureADRoundTripper(p.AzureAD, t)
		case p.GoogleIAM != nil:
			t, err = newGoogleIAMRoundTripper(p.GoogleIAM, t)
		}
		if err != nil {
			return nil, err
		}
		c.Transport = t
	}
	return c, nil
}

// validateProm checks what only Prometheus-style endpoints have. Building
// the client reads the TLS files, so a wrong path fails at start.
func (e *EndpointConfig) validateProm() []error {
	var errs []error
	if e.BearerTokenFile != "" || e.BasicAuth != (BasicAuth{}) || e.TLS.isSet() {
		errs = append(errs, e.fieldError("http", "set in Prometheus's syntax and by the relay's own settings at once"))
	}
	if err := e.Prom.HTTP.Validate(); err != nil {
		errs = append(errs, e.fieldError("http", "%v", err))
	}
	if _, err := e.newHTTPClient(); err != nil {
		errs = append(errs, e.fieldError("http", "%v", err))
	}
	for i, rc := range e.Prom.WriteRelabel {
		// Validate also sets an unset name validation scheme, which
		// model/relabel needs; UTF-8 is Prometheus 3's default.
		if rc == nil {
			errs = append(errs, e.fieldError(fmt.Sprintf("write_relabel_configs[%d]", i), "empty rule"))
		} else if err := rc.Validate(commonmodel.UTF8Validation); err != nil {
			errs = append(errs, e.fieldError(fmt.Sprintf("write_relabel_configs[%d]", i), "%v", err))
		}
	}
	if m := e.Prom.Metadata; m.Send {
		if m.SendInterval <= 0 {
			errs = append(errs, e.fieldError("metadata_config.send_interval", "must be positive, got %s", m.SendInterval))
		}
		if m.MaxSamplesPerSend < 0 {
			errs = append(errs, e.fieldError("metadata_config.max_samples_per_send", "must not be negative, got %d", m.MaxSamplesPerSend))
		}
	}
	return errs
}

// lineSuffix formats an Origin's line for errors.
func (o Origin) lineSuffix() string {
	if o.Line <= 0 {
		return ""
	}
	return ":" + strconv.Itoa(o.Line)
}
