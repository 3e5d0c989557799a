// Package kstat reads the kernel's own counters, the evidence that a
// mechanism under study really engaged: SNMP and TCP extended counters
// (NetStat), socket counts and memory (SockStat), per-CPU receive work
// (Softnet), softirqs and hard interrupts per CPU (Softirqs, Interrupts),
// CPU time by kind (CPUStat), kernel object caches (SlabInfo), the CPU time
// of ksoftirqd threads (TaskStat, FindKsoftirqd), interface counters
// (LinkStats) and tracepoint hits (TracepointCounter).
//
// Every file format has a pure Parse function tested on captured samples in
// testdata/, and a Read function that reads the live file. Every snapshot has
// a Sub method that turns two snapshots into the delta of a phase:
//
//	before, _ := kstat.ReadNetStat()
//	// run the phase
//	after, _ := kstat.ReadNetStat()
//	engaged := after.Sub(before)["TcpExt.BusyPollRxPackets"] > 0
//
// # Namespaces
//
// Which namespace a reading describes matters as much as the number:
//
//   - Per network namespace, of the calling thread: NetStat, SockStat (except
//     a few host-wide fields, see SockStat) and LinkStats. The /proc readers go
//     through /proc/thread-self/net rather than /proc/net, which shows the
//     namespace of the process's main thread. An agent started inside a node
//     has all its threads there and reads its node; code that switches a
//     locked thread into a namespace must read on that thread.
//   - Host-wide, whoever reads: Softnet (though under /proc/net), Softirqs,
//     Interrupts, CPUStat, SlabInfo, tracepoint counts (unless opened
//     ForThread or ForProcess; WithFilter can keep to one device name, which
//     other namespaces may share). A delta on these includes every other
//     namespace's traffic and the host's; read them over a quiet baseline,
//     or attribute with per-namespace counters.
//   - Tasks: FindKsoftirqd and ReadTaskStat see the PID namespace of the
//     process; kernel threads are visible only from the host's.
//
// Slab counts need root (/proc/slabinfo is mode 0400), tracepoint counters
// need CAP_PERFMON and, once, a tracefs mount (see OpenTracepoint).
//
// A Read costs 30-200 µs (on a 2-vCPU VM with Linux 6.18; ReadSlabInfo about
// 1.5 ms, FindKsoftirqd, which reads every process's stat, about 5 ms; see
// the benchmarks): take snapshots between measurement phases, never inside a
// measured loop, and find the ksoftirqd threads once.
package kstat
