package relay

// Size caps of the manager's free lists. A buffer grown past its cap by
// one outsized scrape (a 10 MB line, a target with a million samples) is
// left to the garbage collector instead of being pooled: kept, it would
// pin its peak size for the rest of the run (as VictoriaMetrics's pools
// drop oversized buffers). The caps sit well above what a kubelet sends, so
// steady-state scrapes keep reusing their buffers.
const (
	// maxPooledChunk caps a streamed scrape's read buffer (2*streamChunk
	// unless a line was longer).
	maxPooledChunk = 1 << 20
	// maxPooledBody caps the buffer of a payload read whole (non-text).
	maxPooledBody = 16 << 20
	// maxPooledSamples caps, in samples, the remote-write and view sample
	// buffers: about 8 MiB and 6 MiB.
	maxPooledSamples = 1 << 18
)
