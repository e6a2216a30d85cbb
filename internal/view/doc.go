// Package view holds the latest scrape of every target as immutable
// TargetViews and renders them in the Prometheus text format (WriteText) for
// /metrics and scrape-once. A view's buffers go back to the relay for reuse
// only once no render holds it (TargetView.InUse).
package view
