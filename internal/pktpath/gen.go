package pktpath

// The programs are compiled once, by scripts/bpf.sh (clang and libbpf's
// headers), into pktpath_bpfel.go and pktpath_bpfel.o, which are
// committed: building labctl needs no clang. -mcpu=v3: 32-bit jumps and
// arithmetic (Linux 5.1), older than any stage's kernel.
//go:generate go tool bpf2go -target bpfel -type event pktpath bpf/pktpath.c -- -mcpu=v3 -Wall -Werror
