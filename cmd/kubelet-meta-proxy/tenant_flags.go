package main

import (
	"maps"

	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/remotewrite"
)

// addTenantFlags registers the tenant-routing flags. They set the tenant
// routing of the --remote-write-url endpoints and of --config.file's
// remote_write entries (remotewrite.TenantConfig; Prometheus's syntax has no
// tenant field); endpoints of --remote-write-config have their own tenant section.
func (o *remoteWriteOptions) addTenantFlags(fs *pflag.FlagSet) {
	t := &o.Endpoint.Tenant
	fs.StringVar(&t.Label, "tenant-label", t.Label,
		"Route each series to the tenant named by this label's value after enrichment, e.g. team: one tenant per request, in --tenant-header (also for --config.file's remote_write entries, whose metric metadata then goes to each tenant for its own families). Empty: no routing (one tenant per endpoint, from --remote-write-header).")
	fs.StringVar(&t.Header, "tenant-header", t.Header,
		"Header that carries the tenant (default "+remotewrite.DefaultTenantHeader+"; THANOS-TENANT for Thanos Receive).")
	fs.StringVar(&t.Missing, "tenant-missing", t.Missing,
		"What becomes of series without the tenant label (or with a value that is no valid tenant ID): default (send them to --default-tenant) or drop (count them as dropped, reason=no_tenant). Default: default.")
	fs.StringVar(&t.Default, "default-tenant", t.Default,
		"Tenant of the series without the tenant label, with --tenant-missing=default.")
	fs.BoolVar(&t.RemoveLabel, "tenant-remove-label", t.RemoveLabel,
		"Remove the tenant label from the series sent (the tenant already says it).")
	fs.IntVar(&t.MaxTenants, "tenant-max", remotewrite.DefaultMaxTenants,
		"Most tenants queued at once per endpoint; samples of more are dropped (reason=tenant_limit).")
	fs.DurationVar(&t.IdleTimeout, "tenant-idle-timeout", remotewrite.DefaultTenantIdleTimeout,
		"A tenant with nothing to send for this long is forgotten (its queue and its metric series).")
}

// tenantFlagNames maps the tenant config-file fields to their flags, for
// flagErrors.
var tenantFlagNames = map[string]string{
	"tenant.label":        "--tenant-label",
	"tenant.header":       "--tenant-header",
	"tenant.missing":      "--tenant-missing",
	"tenant.default":      "--default-tenant",
	"tenant.remove_label": "--tenant-remove-label",
	"tenant.max_tenants":  "--tenant-max",
	"tenant.idle_timeout": "--tenant-idle-timeout",
}

func init() { maps.Copy(rwFlagNames, tenantFlagNames) }
