package main

import "golang.org/x/sys/unix"

// pinToCPU pins the load generator to one CPU, so that it does not
// compete with the server it measures.
func pinToCPU(n int) {
	var set unix.CPUSet
	set.Set(n)
	_ = unix.SchedSetaffinity(0, &set)
}
