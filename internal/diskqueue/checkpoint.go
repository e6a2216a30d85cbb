package diskqueue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// The checkpoint says what was acknowledged: the end of the longest
// acknowledged prefix (Ack) and, beyond it, the records finished out of
// order by parallel senders (Done), so that a restart re-reads only records
// whose delivery did not finish.
//
// It is written in place on every acknowledgement (a pwrite into the page
// cache, which a killed process cannot lose) and fsynced on Sync. Two slots
// alternate, each with a generation and a CRC, so that a write torn by a
// power loss leaves the previous state readable.
//
// Slot: magic u32 | gen u64 | ack.Seg u64 | ack.Off i64 | n u32 |
// n x (Seg u64, Off i64) | crc32c u32 over everything before it.
const (
	ckMagic = 0x324b434b // "KCK2"
	// ckSlotSize holds 4093 finished records: more than a writer at the
	// most shards (1024) keeps in flight (3 per lane, plus one). Only the
	// used bytes of a slot are written.
	ckSlotSize   = 64 << 10
	ckHeaderSize = 4 + 8 + 8 + 8 + 4
	// ckMaxDone is how many out-of-order finished records a slot holds;
	// any beyond are read again after a restart.
	ckMaxDone = (ckSlotSize - ckHeaderSize - 4) / 16
	// legacyCheckpointSize is the first format: ack.Seg, ack.Off, crc.
	legacyCheckpointSize = 20
)

type checkpoint struct {
	gen  uint64
	ack  Pos
	done []Pos // sorted, all after ack
}

// encode puts c into b (ckSlotSize bytes) and returns the bytes used.
func (c *checkpoint) encode(b []byte) []byte {
	n := min(len(c.done), ckMaxDone)
	binary.LittleEndian.PutUint32(b[0:], ckMagic)
	binary.LittleEndian.PutUint64(b[4:], c.gen)
	binary.LittleEndian.PutUint64(b[12:], c.ack.Seg)
	binary.LittleEndian.PutUint64(b[20:], uint64(c.ack.Off))
	binary.LittleEndian.PutUint32(b[28:], uint32(n))
	off := ckHeaderSize
	for _, p := range c.done[:n] {
		binary.LittleEndian.PutUint64(b[off:], p.Seg)
		binary.LittleEndian.PutUint64(b[off+8:], uint64(p.Off))
		off += 16
	}
	binary.LittleEndian.PutUint32(b[off:], crc32.Checksum(b[:off], castagnoli))
	return b[:off+4]
}

// decodeSlot reads one slot; ok is false for an empty, torn or foreign one.
func decodeSlot(b []byte) (c checkpoint, ok bool) {
	if len(b) < ckHeaderSize+4 || binary.LittleEndian.Uint32(b) != ckMagic {
		return c, false
	}
	n := int(binary.LittleEndian.Uint32(b[28:]))
	end := ckHeaderSize + 16*n
	if n > ckMaxDone || end+4 > len(b) || crc32.Checksum(b[:end], castagnoli) != binary.LittleEndian.Uint32(b[end:]) {
		return c, false
	}
	c.gen = binary.LittleEndian.Uint64(b[4:])
	c.ack = Pos{binary.LittleEndian.Uint64(b[12:]), int64(binary.LittleEndian.Uint64(b[20:]))}
	for off := ckHeaderSize; off < end; off += 16 {
		c.done = append(c.done, Pos{binary.LittleEndian.Uint64(b[off:]), int64(binary.LittleEndian.Uint64(b[off+8:]))})
	}
	return c, true
}

// readCheckpoint returns the newest valid slot (or the legacy format).
func readCheckpoint(path string) (checkpoint, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return checkpoint{}, err
	}
	if len(b) == legacyCheckpointSize {
		if crc32.Checksum(b[:16], castagnoli) != binary.LittleEndian.Uint32(b[16:]) {
			return checkpoint{}, fmt.Errorf("checkpoint %s: bad checksum", path)
		}
		return checkpoint{ack: Pos{binary.LittleEndian.Uint64(b), int64(binary.LittleEndian.Uint64(b[8:]))}}, nil
	}
	var best checkpoint
	found := false
	for off := 0; off < len(b); off += ckSlotSize {
		if c, ok := decodeSlot(b[off:min(off+ckSlotSize, len(b))]); ok && (!found || c.gen > best.gen) {
			best, found = c, true
		}
	}
	if !found {
		return checkpoint{}, fmt.Errorf("checkpoint %s: no valid slot in %d bytes", path, len(b))
	}
	return best, nil
}

// createCheckpoint writes c as a new checkpoint file atomically (temp file,
// fsync, rename, fsync of the directory) and returns it open for the
// in-place writes that follow.
func createCheckpoint(dir string, c *checkpoint) (*os.File, error) {
	// Both slots are written (the other one empty) so that the in-place
	// writes that follow need no new blocks, even on a full disk.
	var b [2 * ckSlotSize]byte
	slot := int(c.gen%2) * ckSlotSize
	c.encode(b[slot : slot+ckSlotSize])
	tmp := filepath.Join(dir, checkpointName+".tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteAt(b[:], 0)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, checkpointName))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// writeSlot writes c into its slot (by generation) without fsync.
func writeSlot(f *os.File, c *checkpoint, buf []byte) error {
	if f == nil {
		return errors.New("no checkpoint file")
	}
	_, err := f.WriteAt(c.encode(buf), int64(c.gen%2)*ckSlotSize)
	return err
}
