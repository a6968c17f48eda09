package softhsm

import "syscall"

// swtpmSysProcAttr makes the kernel kill swtpm if agentsso dies without
// stopping it, so no test run leaks an swtpm.
func swtpmSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
