#!/usr/bin/env bash
# The main job on a fresh machine, in one command:
#
#   sudo scripts/demo.sh [--keep]
#
# installs what is missing, builds labctl, brings up the embedded quickstart
# lab (two nodes, one veth pair, an agent in each), runs the rr experiment
# between them, shows the stored result and its trace, and brings the lab
# down again (--keep leaves it up to explore).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH=$PATH:/usr/local/go/bin

step() { printf '\n== %s\n' "$*" >&2; }

step "dependencies"
scripts/deps.sh

step "build"
CGO_ENABLED=0 go build -ldflags "-X main.version=$(git describe --always --dirty 2>/dev/null || echo dev)" -o bin/labctl ./labctl
labctl=bin/labctl
scripts/cni.sh # bin/cni, for labs with cni links (labctl up k8s-node)

step "labctl up quickstart"
$labctl up quickstart
$labctl status quickstart

step "labctl run rr quickstart --client n1 --server n2"
id=$($labctl run rr quickstart --client n1 --server n2 --param duration=2s --param repeats=3 -o yaml | sed -n 's/^id: //p')

step "the stored result"
$labctl results show "$id"
echo "stored in ${LABCTL_STATE_DIR:-/var/lib/labctl}/results/$id/" >&2

step "its trace (from Jaeger when one runs: scripts/jaeger.sh start; else the local copy)"
$labctl trace "$id"

if [[ ${1:-} == --keep ]]; then
	step "the lab stays up: labctl exec quickstart n1 -- ip -br addr; labctl down quickstart"
else
	step "labctl down quickstart"
	$labctl down quickstart
fi
