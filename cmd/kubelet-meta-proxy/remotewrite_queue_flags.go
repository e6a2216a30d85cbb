package main

import (
	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/remotewrite"
)

// addQueueFlags registers the disk-queue flags (issue 12). They set the
// per-endpoint defaults, which --remote-write-config endpoints inherit
// unless they set queue_dir / queue_max_bytes themselves.
func (o *remoteWriteOptions) addQueueFlags(fs *pflag.FlagSet) {
	q := &o.Endpoint.Queue
	if q.MaxBytes == 0 {
		q.MaxBytes = remotewrite.DefaultQueueMaxBytes
	}
	if q.SyncInterval == 0 {
		q.SyncInterval = remotewrite.DefaultQueueSyncInterval
	}
	fs.StringVar(&q.Dir, "remote-write-queue-dir", q.Dir,
		"Directory for a durable on-disk queue per endpoint (in a sub-directory named after the endpoint): every request goes through it, "+
			"so a receiver outage or a restart loses nothing up to --remote-write-queue-max-bytes. Empty: memory queue only.")
	fs.Int64Var(&q.MaxBytes, "remote-write-queue-max-bytes", q.MaxBytes,
		"Most bytes of disk queue per endpoint; when full, the oldest data is dropped (counted in kubelet_meta_proxy_disk_queue_dropped_samples_total{reason=\"full\"}). "+
			"The default holds about 10 minutes at 40k samples/s (~45 bytes a sample on disk).")
	fs.DurationVar(&q.SyncInterval, "remote-write-fsync-interval", q.SyncInterval,
		"How often the disk queue is fsynced. kill -9 or an OOM kill loses only samples not yet in a request (at most --batch-send-deadline of scrapes); "+
			"an OS crash or power loss also loses up to this interval of requests.")
}
