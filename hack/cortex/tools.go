//go:build tools

// Package cortex pins the Cortex version that the e2e test bed runs as a multi-tenant
// remote-write receiver. It is its own module (carrying the replace and exclude lines of
// Cortex's go.mod) so the main module's ./... never builds Cortex. hack/build-cortex.sh
// builds bin/cortex from here.
package cortex

import _ "github.com/cortexproject/cortex/cmd/cortex"
