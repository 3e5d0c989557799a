package kstat

import (
	"bufio"
	"fmt"
	"io"
	"os"
)

// procNet is the directory of the calling thread's network namespace files.
// /proc/net is a symlink to /proc/self/net, which shows the namespace of the
// process's main thread: a locked thread that entered another namespace
// (setns, unshare) would read the wrong node's counters there. Since Linux
// 3.17 /proc/thread-self/net shows the namespace of the thread that reads.
const procNet = "/proc/thread-self/net/"

// readFile opens path and parses it, naming the file in any error.
func readFile[T any](path string, parse func(io.Reader) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, err // *PathError names the file
	}
	defer f.Close()
	v, err := parse(f)
	if err != nil {
		return v, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// newScanner returns a line scanner whose lines may be up to 1 MiB long: the
// intr line of /proc/stat and the rows of /proc/interrupts grow with the
// number of IRQs and CPUs past bufio's default 64 KiB on large machines.
func newScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20) // starts at 4 KiB and grows as needed
	return sc
}

// delta32 is the increase of a counter the kernel keeps as a 32-bit unsigned
// int (softnet_stat, softirqs, interrupts): correct across one wrap-around,
// which at a million events per second comes every 71 minutes.
func delta32(cur, prev uint64) uint64 { return uint64(uint32(cur) - uint32(prev)) }

// cpuIndex maps CPU numbers to their position in cpus.
func cpuIndex(cpus []int) map[int]int {
	m := make(map[int]int, len(cpus))
	for i, c := range cpus {
		m[c] = i
	}
	return m
}
