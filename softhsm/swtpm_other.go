//go:build !linux

package softhsm

import "syscall"

func swtpmSysProcAttr() *syscall.SysProcAttr { return nil }
