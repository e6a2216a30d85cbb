//go:build !unix

package diskqueue

import (
	"os"
	"path/filepath"
)

// lockDir without flock: the file is created but nothing is locked.
func lockDir(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
}
