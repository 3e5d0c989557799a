#!/usr/bin/env bash
# Installs what labctl, its tests and its benchmarks need on a Debian machine,
# and only what is missing: running it twice changes nothing the second time.
#
#   scripts/deps.sh          kernel tools and the test dependencies
#   scripts/deps.sh --bench  also the peers benchmarks compare against
#
# The tests also check that the committed BPF objects are what their C
# source compiles to (scripts/bpf.sh --check), with Debian's clang 14 and
# libbpf's headers; building labctl needs neither.
set -euo pipefail

packages=(
	iproute2 iptables nftables ethtool tcpdump iputils-ping procps # the lab and its checks
	chromium                                                       # the Jaeger UI test (headless)
	clang llvm libbpf-dev                                          # scripts/bpf.sh --check
	git ca-certificates
)
if [[ ${1:-} == --bench ]]; then
	packages+=(sockperf iperf3 mininet bridge-utils)
fi

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if ((${#missing[@]} == 0)); then
	echo "deps: everything is installed" >&2
else
	echo "deps: installing ${missing[*]}" >&2
	if [[ $(id -u) != 0 ]]; then
		echo "deps: installing packages needs root" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null; then
	echo "deps: Go 1.26 is required (https://go.dev/dl/); /usr/local/go/bin must be on PATH" >&2
	exit 1
fi
