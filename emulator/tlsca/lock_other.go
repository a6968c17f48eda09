//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package tlsca

import "sync"

var dirMu sync.Mutex

// lockDir serialises the users of a CA directory within this process only:
// without flock(2), two processes creating a CA in one empty directory at
// the same moment may end up with different ones.
func lockDir(string) (unlock func(), err error) {
	dirMu.Lock()
	return dirMu.Unlock, nil
}
