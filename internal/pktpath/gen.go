package pktpath

// The programs are compiled once, by scripts/bpf.sh (clang and libbpf's
// headers), into pktpath_bpfel.go and pktpath_bpfel.o, which are
// committed: building labctl needs no clang. -mcpu=v3 for the atomic add
// that numbers packets (BPF atomics, Linux 5.12).
//go:generate go tool bpf2go -target bpfel -type event pktpath bpf/pktpath.c -- -mcpu=v3 -Wall -Werror
