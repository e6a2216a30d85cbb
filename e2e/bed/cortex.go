package bed

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"sigs.k8s.io/yaml"
)

// CortexOptions of StartCortex. The zero value is a usable default.
type CortexOptions struct {
	// Tenants are the per-tenant overrides the runtime config starts with (keys as in
	// Cortex's limits config: accept_ha_samples, ingestion_rate, ingestion_burst_size, ...).
	Tenants map[string]map[string]any
	// HAUpdateTimeout and HAFailoverTimeout of the HA tracker (defaults 1s and 3s: a failover
	// takes about 4 s).
	HAUpdateTimeout, HAFailoverTimeout time.Duration
	// Args are extra Cortex flags.
	Args []string
}

// Cortex is a single-process Cortex (-target=all) on 127.0.0.1 with local filesystem storage
// under b.Dir/cortex, auth_enabled (X-Scope-OrgID required), and the HA tracker (memberlist
// bound to 127.0.0.1, labels cluster and __replica__; a tenant is deduplicated only with
// accept_ha_samples in its overrides). Per-tenant limits come from a runtime overrides file
// that SetTenantLimits rewrites.
type Cortex struct {
	// URL is http://127.0.0.1:port; PushURL its remote-write endpoint (/api/v1/push);
	// QueryURL the Prometheus API prefix (/prometheus).
	URL, PushURL, QueryURL string
	// Dir holds the config, runtime overrides and data; LogFile the log (cortex.log).
	Dir, LogFile string

	p        *proc
	override string
	mu       sync.Mutex
	tenants  map[string]map[string]any
}

// StartCortex builds nothing (bin/cortex must exist: hack/build-cortex.sh cortex, or
// BuildExtra) and starts Cortex, waiting until /ready. Stop stops it; Bed.Stop too.
func (b *Bed) StartCortex(ctx context.Context, opts CortexOptions) (*Cortex, error) {
	bin, err := b.binary("cortex")
	if err != nil {
		return nil, err
	}
	if opts.HAUpdateTimeout == 0 {
		opts.HAUpdateTimeout = time.Second
	}
	if opts.HAFailoverTimeout == 0 {
		opts.HAFailoverTimeout = 3 * time.Second
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort("127.0.0.1"); err != nil {
			return nil, err
		}
	}
	dir := filepath.Join(b.Dir, "cortex")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &Cortex{
		URL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), Dir: dir, LogFile: b.logPath("cortex"),
		override: filepath.Join(dir, "overrides.yaml"), tenants: map[string]map[string]any{},
	}
	c.PushURL, c.QueryURL = c.URL+"/api/v1/push", c.URL+"/prometheus"
	for t, l := range opts.Tenants {
		c.tenants[t] = l
	}
	if err := c.writeOverrides(); err != nil {
		return nil, err
	}
	d := func(sub string) string { return filepath.Join(dir, sub) }
	args := []string{
		"-target=all", "-auth.enabled=true", "-log.level=info",
		"-server.http-listen-address=127.0.0.1", fmt.Sprintf("-server.http-listen-port=%d", ports[0]),
		"-server.grpc-listen-address=127.0.0.1", fmt.Sprintf("-server.grpc-listen-port=%d", ports[1]),
		"-server.grpc-max-recv-msg-size-bytes=104857600", "-server.grpc-max-send-msg-size-bytes=104857600",
		// Every ring in memory, one instance on 127.0.0.1: no interface lookup, fast start and stop.
		"-distributor.ring.store=inmemory", "-distributor.ring.instance-addr=127.0.0.1",
		"-ring.store=inmemory", "-ingester.lifecycler.addr=127.0.0.1", "-distributor.replication-factor=1",
		"-ingester.min-ready-duration=0s", "-ingester.final-sleep=0s",
		"-compactor.ring.store=inmemory", "-compactor.ring.instance-addr=127.0.0.1", "-compactor.data-dir=" + d("compactor"),
		"-store-gateway.sharding-ring.store=inmemory", "-store-gateway.sharding-ring.instance-addr=127.0.0.1",
		"-ruler.ring.store=inmemory", "-ruler.ring.instance-addr=127.0.0.1", "-ruler.rule-path=" + d("rules"),
		"-ruler-storage.backend=filesystem", "-ruler-storage.filesystem.dir=" + d("ruler-storage"),
		"-alertmanager.sharding-ring.store=inmemory", "-alertmanager.sharding-ring.instance-addr=127.0.0.1",
		"-alertmanager.storage.path=" + d("alertmanager"), "-alertmanager.cluster.listen-address=",
		"-alertmanager.web.external-url=" + c.URL + "/alertmanager",
		"-alertmanager-storage.backend=filesystem", "-alertmanager-storage.filesystem.dir=" + d("alertmanager-storage"),
		"-blocks-storage.backend=filesystem", "-blocks-storage.filesystem.dir=" + d("blocks"),
		"-blocks-storage.tsdb.dir=" + d("tsdb"), "-blocks-storage.bucket-store.sync-dir=" + d("tsdb-sync"),
		// The HA tracker refuses the inmemory store: a single-node memberlist on 127.0.0.1.
		"-distributor.ha-tracker.enable=true", "-distributor.ha-tracker.store=memberlist",
		"-distributor.ha-tracker.cluster=cluster", "-distributor.ha-tracker.replica=__replica__",
		"-distributor.ha-tracker.update-timeout=" + opts.HAUpdateTimeout.String(),
		"-distributor.ha-tracker.update-timeout-jitter-max=0s",
		"-distributor.ha-tracker.failover-timeout=" + opts.HAFailoverTimeout.String(),
		"-memberlist.bind-addr=127.0.0.1", fmt.Sprintf("-memberlist.bind-port=%d", ports[2]),
		"-memberlist.advertise-addr=127.0.0.1", fmt.Sprintf("-memberlist.advertise-port=%d", ports[2]),
		"-querier.active-query-tracker-dir=" + d("active-query-tracker"), // default: ./ (the test's cwd)
		"-runtime-config.file=" + c.override, "-runtime-config.reload-period=1s",
	}
	c.p = b.newExtra("cortex", bin, append(args, opts.Args...)...)
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Start starts a stopped Cortex again on the same ports and data, and waits until ready.
func (c *Cortex) Start(ctx context.Context) error {
	if c.p.running() {
		return nil
	}
	if err := c.p.start(); err != nil {
		return err
	}
	return waitFor(ctx, "cortex", 60*time.Second, c.p, httpOK(httpClient, c.URL+"/ready", nil))
}

// Stop stops Cortex (SIGTERM); its data stays for Start.
func (c *Cortex) Stop() { c.p.stop(15 * time.Second) }

// Logs returns the last n lines of Cortex's log.
func (c *Cortex) Logs(n int) string { return tail(c.LogFile, n) }

func tenantHeader(tenant string) http.Header { return http.Header{"X-Scope-Orgid": {tenant}} }

// Query runs an instant query as tenant.
func (c *Cortex) Query(ctx context.Context, tenant, q string) ([]Sample, error) {
	return queryAt(ctx, c.QueryURL, tenantHeader(tenant), q)
}

// WaitQuery runs q as tenant every 500ms until cond accepts the result or timeout passes.
func (c *Cortex) WaitQuery(ctx context.Context, tenant, q string, timeout time.Duration, cond func([]Sample) bool) ([]Sample, error) {
	return waitQuery(ctx, func(ctx context.Context) ([]Sample, error) { return c.Query(ctx, tenant, q) }, q, timeout, cond)
}

// SetTenantLimits replaces tenant's overrides (Cortex limits config keys, e.g.
// {"ingestion_rate": 1, "ingestion_burst_size": 1, "accept_ha_samples": true}; nil removes
// them) and waits until Cortex serves them on /runtime_config.
func (c *Cortex) SetTenantLimits(ctx context.Context, tenant string, limits map[string]any) error {
	c.mu.Lock()
	if limits == nil {
		delete(c.tenants, tenant)
	} else {
		c.tenants[tenant] = limits
	}
	err := c.writeOverrides()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return waitFor(ctx, "cortex runtime config", 30*time.Second, c.p, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/runtime_config", nil)
		if err != nil {
			return err
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var got struct {
			Overrides map[string]map[string]any `json:"overrides"`
		}
		if err := yaml.Unmarshal(body, &got); err != nil {
			return fmt.Errorf("/runtime_config: %w", err)
		}
		have := got.Overrides[tenant]
		if limits == nil {
			if have != nil {
				return fmt.Errorf("tenant %s still has overrides", tenant)
			}
			return nil
		}
		for k, v := range limits {
			if fmt.Sprint(have[k]) != fmt.Sprint(v) {
				return fmt.Errorf("tenant %s: %s is %v, want %v", tenant, k, have[k], v)
			}
		}
		return nil
	})
}

// writeOverrides writes the runtime config atomically (Cortex reloads it every second).
func (c *Cortex) writeOverrides() error {
	body, err := json.Marshal(map[string]any{"overrides": c.tenants}) // JSON is YAML
	if err != nil {
		return err
	}
	tmp := c.override + ".tmp"
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, c.override)
}
