//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package tlsca

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDir takes an exclusive flock(2) on dir/ca.lock, waiting for it, so
// that processes sharing a CA directory do not create two CAs or write a
// server certificate at the same time.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("tlsca: open the lock file of the CA directory: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("tlsca: lock the CA directory: %w", err)
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) {
		for {
			lerr = syscall.Flock(int(fd), syscall.LOCK_EX)
			if !errors.Is(lerr, syscall.EINTR) {
				return
			}
		}
	}); err != nil {
		lerr = err
	}
	if lerr != nil {
		f.Close()
		return nil, fmt.Errorf("tlsca: lock the CA directory: %w", lerr)
	}
	return func() { f.Close() }, nil
}
