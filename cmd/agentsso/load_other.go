//go:build !linux

package main

// pinToCPU is a no-op where the scheduler affinity call does not exist;
// the figures in the README were measured on Linux.
func pinToCPU(int) {}
