// Package remotewrite sends enriched samples to Prometheus remote-write 1.0
// receivers (Prometheus, Mimir, Cortex, Thanos Receive, VictoriaMetrics).
//
// Use: Options (bound to flags) -> Options.Config (parses and validates,
// reading the credential and TLS files once) -> New -> Run in a goroutine ->
// Append from the scrape loop.
//
// # Queues
//
// Every endpoint has its own queue of a fixed number of shards. A sample goes
// to shard Table.Key % shards, so all samples of a producer (a scrape
// target), and so each of its series, use the same shard; a shard sends one
// batch at a time and retries it until it is accepted, fails for good, or
// shutdown gives up on it, which keeps each series' samples in the order
// they were appended. A batch is sent when it holds
// MaxSamplesPerSend samples, or after BatchSendDeadline.
//
// Append never blocks: it copies the samples into the shards' rings (32-byte
// model.Sample values). A ring holds at most Capacity/Shards samples; when it is
// full the oldest samples are dropped and counted (reason="queue_full"). So
// while an endpoint is down the newest Capacity samples wait for it, and when
// it is back they are delivered in order. Memory per endpoint is bounded by
// Capacity plus one batch per shard in flight.
//
// # Failures
//
// Network errors, timeouts, 5xx and 429 are recoverable (RecoverableError):
// the batch is retried after an exponential, jittered backoff between
// MinBackoff and MaxBackoff, or after the receiver's Retry-After (seconds or
// HTTP date, capped at 10 minutes). Any other status is final: the batch is
// dropped and counted as samples_failed_total and
// samples_dropped_total{reason="http_<status>"}, and logged at most once a
// minute per cause. Samples of a malformed series (labels not sorted, empty,
// duplicated, or no __name__) are dropped alone (reason="invalid_series")
// rather than letting the receiver reject their whole batch.
//
// # Shutdown
//
// When Run's context is cancelled, Append stops accepting (reason="shutdown")
// and the shards send everything they hold, for at most ShutdownTimeout
// (default 20s, so that the relay stops within Kubernetes's default 30s grace
// period). Whatever is left then is dropped and counted, and Run returns an
// error saying how much.
//
// # Wire format
//
// Requests are POSTs of a snappy block-compressed prompb.WriteRequest with
// Content-Encoding: snappy, Content-Type: application/x-protobuf,
// X-Prometheus-Remote-Write-Version: 0.1.0 and User-Agent
// kubelet-meta-proxy/VERSION; configured headers cannot replace these. The
// body is written by hand straight into snappy's block format, one
// TimeSeries per sample, from the label encodings interned in each
// producer's LabelTable: a label set seen before in the request is a copy
// element, not a marshal plus a compressor's match search (see encoder).
// Values are copied bit for bit, so stale markers (StaleNaN) survive.
// Series are sent with the labels they were interned with: external labels
// (Config.ExternalLabels) are added by whoever builds the series.
//
// # High availability
//
// For Mimir/Cortex HA deduplication run two relays with
// the external labels cluster=NAME and __replica__=$(POD_NAME).
// These are ordinary external labels: every series of every request carries
// the one cluster/replica pair, which is what the receiver's HA tracker
// needs; nothing else is done for HA.
//
// # Tenants
//
// An endpoint with EndpointConfig.Tenant set routes each series to the
// tenant named by one of its labels (usually team, after enrichment), sent
// in the tenant header (X-Scope-OrgID, or e.g. THANOS-TENANT); a request
// carries one tenant. Series without the label (or with a value Cortex and
// Mimir would refuse as a tenant ID) go to a default tenant or are dropped
// (reason="no_tenant"). The tenant is computed once per interned label run
// of a producer's table (tenant_router.go), so routing costs the hot path
// an array load per sample. Such an endpoint has a tenantQueue instead of a
// queue (tenant_queue.go): one FIFO per tenant, workers sending whichever
// tenant is due, and a backoff per tenant, so that one tenant's 429s or
// rejections slow only that tenant. Stale markers carry the series' old
// labels, so after a namespace moves to another team its old series end in
// the old tenant. With cluster/__replica__ external labels every series of
// every request carries the pair, so the receiver's HA tracker (per tenant)
// deduplicates; its 202 answers count as tenant_samples_deduplicated_total,
// not as losses.
//
// Metadata (metadata_config.send, endpoints of --config.file): a family's
// metadata goes to every tenant whose series used the family since the
// previous send, one request per tenant with its header (tenant_metadata.go).
// tenantQueue.append, where each sample's tenant is known, records each
// tenant's metric names (a small ID cached per symbol, like the tenant:
// bounded by maxTrackedNames per interval, forgotten with the tenant); the
// sender maps them to families (a histogram's _bucket, _sum and _count are
// one) every send_interval.
//
// # Metrics
//
// All names start with kubelet_meta_proxy_remote_write_ and carry the labels
// remote_name and url: samples_in_total, samples_sent_total,
// samples_retried_total, samples_failed_total, samples_dropped_total{reason},
// bytes_sent_total, request_duration_seconds{code}, queue_length,
// queue_capacity, shards and highest_sent_timestamp_seconds. With tenant
// routing, per tenant (label tenant): tenant_samples_sent_total,
// tenant_bytes_sent_total, tenant_samples_retried_total,
// tenant_samples_deduplicated_total, tenant_samples_dropped_total{reason},
// tenant_queue_length, tenant_queue_share, tenant_backoff; and tenants.
package remotewrite
