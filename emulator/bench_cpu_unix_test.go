//go:build unix

package emulator_test

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per operation since since (a cpuTime),
// as cpu-µs/op: unlike ns/op it does not count the time other processes
// take the machine's CPUs, so it compares runs on a busy machine.
func reportCPU(b *testing.B, since time.Duration) {
	if since > 0 && b.N > 0 {
		b.ReportMetric(float64(cpuTime()-since)/float64(b.N)/1e3, "cpu-µs/op")
	}
}
