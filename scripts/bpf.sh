#!/usr/bin/env bash
# Compiles the packet-path programs (internal/pktpath/bpf/*.c) with clang
# into the Go files and objects bpf2go writes, which are committed, so that
# building labctl needs no clang.
#
#   scripts/bpf.sh          compile and write internal/pktpath/pktpath_bpfel.{go,o}
#   scripts/bpf.sh --check  compile into a temporary directory and fail if
#                           the result differs from what is committed (CI)
#
# The object is the same byte for byte for the same clang: Debian 12's
# clang 14 (apt-get install clang llvm libbpf-dev; scripts/deps.sh does).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
pkg=$repo/internal/pktpath
for tool in clang llvm-strip; do
	if ! command -v "$tool" >/dev/null; then
		echo "bpf: $tool is missing (apt-get install clang llvm libbpf-dev)" >&2
		exit 1
	fi
done
if [[ ! -f /usr/include/bpf/bpf_helpers.h ]]; then
	echo "bpf: libbpf's headers are missing (apt-get install libbpf-dev)" >&2
	exit 1
fi

if [[ ${1:-} != --check ]]; then
	(cd "$pkg" && go generate ./...)
	echo "bpf: wrote internal/pktpath/pktpath_bpfel.{go,o}" >&2
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Compile a copy of the package: bpf2go writes beside its sources, and the
# object records paths relative to them, so the copy gives the same bytes.
mkdir -p "$tmp/internal/pktpath"
cp -r "$pkg/bpf" "$pkg/gen.go" "$tmp/internal/pktpath/"
cp "$repo/go.mod" "$repo/go.sum" "$tmp/"
(cd "$tmp/internal/pktpath" && GOFLAGS=-mod=mod go generate ./... >/dev/null)
for f in pktpath_bpfel.go pktpath_bpfel.o; do
	if ! cmp -s "$tmp/internal/pktpath/$f" "$pkg/$f"; then
		echo "bpf: internal/pktpath/$f is not what bpf/pktpath.c compiles to; run scripts/bpf.sh and commit" >&2
		exit 1
	fi
done
echo "bpf: the committed objects match their source" >&2
