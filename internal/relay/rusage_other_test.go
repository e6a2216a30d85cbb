//go:build !unix

package relay

import "time"

func processCPU() time.Duration { return 0 }
