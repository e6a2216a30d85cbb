package diskqueue

import (
	"errors"
	"fmt"
	"time"
)

// Defaults of Options; a zero field takes its default.
const (
	DefaultMaxBytes       = 1 << 30 // 1 GiB per endpoint
	DefaultSegmentBytes   = 32 << 20
	DefaultMaxRecordBytes = 16 << 20
	DefaultSyncInterval   = time.Second
	DefaultRetryInterval  = 5 * time.Second
	DefaultKeepBytes      = 4 << 20
)

// Options configure one endpoint's queue.
type Options struct {
	// Dir holds the segments, the checkpoint and the lock file. One
	// directory per endpoint; a second process opening it fails.
	Dir string
	// Name is the endpoint's name, the const label remote_name of the
	// queue's metrics.
	Name string
	// MaxBytes bounds the segment files on disk; when an append would pass
	// it, the oldest segments are dropped (reason "full").
	MaxBytes int64
	// SegmentBytes is the size at which a segment is sealed and a new one
	// started. Dropping for room works by whole segments.
	SegmentBytes int64
	// MaxRecordBytes bounds one record's payload, on append and on read (a
	// corrupt length beyond it is not believed).
	MaxRecordBytes int
	// SyncInterval is how often appended data is fsynced and the read
	// position checkpointed; an OS crash or power loss loses at most this.
	SyncInterval time.Duration
	// RetryInterval is how often a queue whose disk failed tries to open a
	// new segment again; in between Append fails fast with ErrUnavailable.
	RetryInterval time.Duration
	// KeepBytes bounds the payloads AppendKeep holds in memory for Next
	// (records appended while nothing was backlogged on disk, handed out
	// without being read back). One record is always kept when none is.
	KeepBytes int64
}

func (o Options) withDefaults() Options {
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = min(DefaultSegmentBytes, o.MaxBytes/4)
	}
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = int(min(DefaultMaxRecordBytes, o.MaxBytes/4))
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	if o.KeepBytes == 0 {
		o.KeepBytes = DefaultKeepBytes
	}
	return o
}

// Validate reports what is wrong with the options (after defaults).
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("diskqueue: Dir is empty"))
	}
	if o.SegmentBytes < 4096 {
		errs = append(errs, fmt.Errorf("diskqueue: SegmentBytes %d is less than 4096", o.SegmentBytes))
	}
	if o.MaxBytes < 2*o.SegmentBytes {
		errs = append(errs, fmt.Errorf("diskqueue: MaxBytes %d is less than two segments (SegmentBytes %d)", o.MaxBytes, o.SegmentBytes))
	}
	if o.MaxRecordBytes < 1 || int64(o.MaxRecordBytes)+frameSize+recHeaderSize > o.MaxBytes/2 {
		errs = append(errs, fmt.Errorf("diskqueue: MaxRecordBytes %d must be in [1, MaxBytes/2 - %d]", o.MaxRecordBytes, frameSize+recHeaderSize))
	}
	if o.SyncInterval < 0 {
		errs = append(errs, fmt.Errorf("diskqueue: SyncInterval %s is negative", o.SyncInterval))
	}
	if o.RetryInterval < 0 {
		errs = append(errs, fmt.Errorf("diskqueue: RetryInterval %s is negative", o.RetryInterval))
	}
	if o.KeepBytes < 0 {
		errs = append(errs, fmt.Errorf("diskqueue: KeepBytes %d is negative", o.KeepBytes))
	}
	return errors.Join(errs...)
}
