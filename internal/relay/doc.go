// Package relay runs the pipeline: one scrape loop per target (Manager),
// and per target the state that turns a payload into enriched series
// (TargetCache): the series cache keyed by raw series bytes, stale markers,
// eviction and tombstones, buffer pools and the relay's scrape self-metrics.
// Each scrape yields a view.TargetView for /metrics and model.Samples for
// the Sink (remote write). Manager.ScrapeAll is the same path once, for
// the scrape-once command.
package relay
