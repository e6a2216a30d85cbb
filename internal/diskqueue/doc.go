// Package diskqueue is a bounded, durable FIFO of opaque records in a
// directory: one queue per remote-write endpoint, each record one encoded
// remote-write request with a small Header (samples, oldest and newest
// timestamp, a caller key).
//
// Use: Open (validates and recovers the directory, takes its flock) ->
// Append from the producers -> one consumer loops Next, sends, Ack ->
// Sync and Close on shutdown.
//
// Direct mode: a producer whose consumer keeps up appends with AppendKeep,
// which also hands the payload to the queue while nothing is backlogged on
// disk (every record not yet read was kept too, within
// Options.KeepBytes). Next then hands it out from memory (Record.Kept),
// without reading it back; it is on disk all the same, and finished (Ack,
// Done) like any other. A record that goes to disk only (Append, or
// AppendKeep beyond KeepBytes) starts a backlog: nothing more is kept
// until the reader has caught up with the writer, so a backlog is read
// back from disk. The order is the append order either way: one reader
// takes each record in its place, from memory or from disk.
//
// # Format
//
// Records are appended to segment files of about Options.SegmentBytes,
// each record framed as length, CRC32C (Castagnoli) and payload (see
// format.go). What was acknowledged is kept in a checkpoint file of two
// generation slots written in place on every Ack and Done and fsynced on
// every Sync (checkpoint.go). A new segment is started at every Open; old ones are only read and
// are deleted once acknowledged to their end.
//
// # Guarantees
//
// Order: records are read in the order they were appended, kept or not.
//
// At least once: Ack(r) acknowledges r and everything before it; Done(r)
// finishes r alone, in any order (parallel senders). A record read and not
// finished is read again after a restart (graceful or kill -9); a finished
// one is not, even when finished out of order. After a power loss, also
// what was finished since the fsync before last.
//
// Durability: data is fsynced every Options.SyncInterval (default 1s) and
// on Sync and Close. A killed process (kill -9, OOM) loses nothing it
// appended, since every Append is a write(2) into the kernel; an OS crash
// or power loss loses at most the last SyncInterval of appends.
//
// Bounds: the segment files never pass Options.MaxBytes; to make room,
// whole oldest segments are dropped and counted (reason "full"). A record's
// payload is at most Options.MaxRecordBytes, which is also the most a read
// allocates whatever length a corrupt frame claims.
//
// # Failures
//
// A torn record (cut short by a crash) or a corrupt one (CRC or length) is
// skipped when read, with a log line and a count (reasons "torn",
// "corrupt"); a bad length gives up the rest of its segment, since the next
// record cannot be found, and reading goes on with the next segment. Never
// a panic, never a stall.
//
// When the disk refuses a write (ENOSPC, EROFS, directory removed, I/O
// error), Append returns an error matching ErrUnavailable, the partial
// record is cut off, the failure is counted (append_errors_total{reason})
// and the caller keeps the data in memory; after Options.RetryInterval the
// next Append tries a new segment (re-creating the directory if it was
// removed). A directory removed under the queue is noticed on the next
// Sync; its records are counted as dropped (reason "removed").
//
// # Metrics
//
// Names start with kubelet_meta_proxy_disk_queue_ and carry the const label
// remote_name: bytes, records, samples, oldest_sample_timestamp_seconds,
// appended_records_total, appended_bytes_total, read_records_total,
// read_bytes_total (records handed out, kept ones included),
// direct_records_total (of those, handed out from memory),
// acked_records_total (its rate is the drain rate),
// dropped_records_total, dropped_bytes_total and dropped_samples_total by
// reason, append_errors_total by reason, fsync_duration_seconds.
package diskqueue
