package diskqueue

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// datasync is fdatasync(2): the data and what is needed to read it back
// (the size), without the timestamps. For the checkpoint, overwritten in
// place, that spares a journal commit on every sync.
func datasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if !errors.Is(serr, syscall.EINTR) {
				return
			}
		}
	}); err != nil {
		// The only failure of Control on a regular file: it was closed.
		return &fs.PathError{Op: "fdatasync", Path: f.Name(), Err: fs.ErrClosed}
	}
	if serr != nil {
		return &fs.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}
