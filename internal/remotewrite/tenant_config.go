package remotewrite

import (
	"fmt"
	"net/http"
	"time"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
)

// DefaultTenantHeader is the header Cortex, Mimir and Loki read the tenant
// from; Thanos Receive's default is THANOS-TENANT.
const DefaultTenantHeader = "X-Scope-OrgID"

// Defaults of the tenant settings.
const (
	// DefaultMaxTenants bounds the tenants an endpoint keeps queues for; a
	// tenant is a label value, so a typo'd or generated value must not cost
	// unbounded memory.
	DefaultMaxTenants = 1000
	// DefaultTenantIdleTimeout is how long a tenant with nothing queued is
	// kept (its queue, counters and metric children) after its last sample.
	DefaultTenantIdleTimeout = 10 * time.Minute
)

// What becomes of a series that lacks the tenant label (TenantConfig.Missing).
const (
	MissingDefault = "default" // send it to TenantConfig.Default
	MissingDrop    = "drop"    // drop it, counted as reason="no_tenant"
)

// maxTenantIDLen is Cortex's and Mimir's limit on a tenant ID.
const maxTenantIDLen = 150

// TenantConfig routes an endpoint's series to tenants: a series goes to the
// tenant named by the value of Label (after enrichment, external labels
// included), sent in Header, one tenant per request. Label empty disables
// routing (the endpoint's static headers apply, as before).
type TenantConfig struct {
	// Label is the label whose value is the tenant, e.g. "team".
	Label string
	// Header carries the tenant; DefaultTenantHeader when empty.
	Header string
	// Missing says what happens to series without Label (or with a value
	// that is no valid tenant ID): MissingDefault or MissingDrop.
	Missing string
	// Default is the tenant of such series when Missing is MissingDefault.
	Default string
	// RemoveLabel removes Label from the series sent: the tenant says it.
	RemoveLabel bool
	// MaxTenants bounds the tenants queued at once; samples of more are
	// dropped (reason="tenant_limit").
	MaxTenants int
	// IdleTimeout: a tenant with nothing queued for this long is forgotten.
	IdleTimeout time.Duration
}

// Enabled reports whether series are routed to tenants.
func (t TenantConfig) Enabled() bool { return t.Label != "" }

// withDefaults fills in what was left out.
func (t TenantConfig) withDefaults() TenantConfig {
	if t.Header == "" {
		t.Header = DefaultTenantHeader
	}
	if t.Missing == "" {
		t.Missing = MissingDefault
	}
	if t.MaxTenants == 0 {
		t.MaxTenants = DefaultMaxTenants
	}
	if t.IdleTimeout == 0 {
		t.IdleTimeout = DefaultTenantIdleTimeout
	}
	return t
}

// validateTenant checks the endpoint's tenant settings; errors name the
// config-file fields (tenant.label, ...).
func (e *EndpointConfig) validateTenant() []error {
	t := e.Tenant
	if !t.Enabled() {
		if t.Header != "" || t.Default != "" || t.Missing != "" || t.RemoveLabel {
			return []error{e.fieldError("tenant.label", "required when other tenant settings are given")}
		}
		return nil
	}
	t = t.withDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, e.fieldError(field, format, args...))
	}
	if e.Queue.Dir != "" {
		// The tenant queues are in memory; a disk queue per tenant is not built.
		bad("tenant.label", "tenant routing and a disk queue (queue_dir) cannot be combined on one endpoint yet")
	}
	if !model.IsValidLabelName(t.Label) || t.Label == "__name__" {
		bad("tenant.label", "%q is not a label name that can name a tenant", t.Label)
	}
	if err := validateHeader(t.Header, "x"); err != nil {
		bad("tenant.header", "%v", err)
	}
	for k := range e.Headers {
		if http.CanonicalHeaderKey(k) == http.CanonicalHeaderKey(t.Header) {
			bad("headers", "%q is the tenant header: with tenant routing each request's tenant is set from label %q", k, t.Label)
		}
	}
	switch t.Missing {
	case MissingDefault:
		if t.Default == "" {
			bad("tenant.default", "required when tenant.missing is %q (or set tenant.missing: %s)", MissingDefault, MissingDrop)
		}
	case MissingDrop:
		if t.Default != "" {
			bad("tenant.default", "is set but tenant.missing is %q: series without label %q are dropped", MissingDrop, t.Label)
		}
	default:
		bad("tenant.missing", "must be %q or %q, got %q", MissingDefault, MissingDrop, t.Missing)
	}
	if t.Default != "" {
		if err := validTenantID(t.Default); err != nil {
			bad("tenant.default", "%v", err)
		}
	}
	if t.MaxTenants < 1 {
		bad("tenant.max_tenants", "must be positive, got %d", t.MaxTenants)
	}
	if t.IdleTimeout <= 0 {
		bad("tenant.idle_timeout", "must be positive, got %s", t.IdleTimeout)
	}
	return errs
}

// validTenantID applies Cortex's and Mimir's rules for tenant IDs (a label
// value breaking them would have every request of its tenant rejected): at
// most 150 bytes of [a-zA-Z0-9!-_.*'()], not "." or "..". '|' separates
// tenants in federated queries, so it is not allowed either.
func validTenantID(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty tenant ID")
	case len(s) > maxTenantIDLen:
		return fmt.Errorf("tenant ID %.20q... is longer than %d bytes", s, maxTenantIDLen)
	case s == "." || s == "..":
		return fmt.Errorf("tenant ID %q is not allowed", s)
	}
	for i := 0; i < len(s); i++ {
		if !tenantIDChar(s[i]) {
			return fmt.Errorf("tenant ID %q has a character %q that Cortex and Mimir reject", s, s[i])
		}
	}
	return nil
}

func tenantIDChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '-', '_', '.', '*', '\'', '(', ')':
		return true
	}
	return false
}
