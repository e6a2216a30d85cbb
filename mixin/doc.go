// Package mixin holds the relay's self-monitoring content as plain files: alerts.yaml (Prometheus alert rules),
// tests/*.yaml (their promtool unit tests), dashboards/*.json (Grafana dashboards) and runbook.md. Its Go tests
// lint them against the relay's real self-metrics; `make mixin` copies them into the Helm chart and the kustomize
// component that ship them.
package mixin
