//go:build unix

package main

import (
	"syscall"
	"time"
)

// processCPUTime is the user+system CPU time of the process so far; ok is
// false where it cannot be read.
func processCPUTime() (d time.Duration, ok bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
