#!/usr/bin/env bash
# Runs a command on a machine kept busy: one CPU hog per CPU (two on the
# reference machine) spin beside it for as long as it runs, so that a test
# that passes only on a quiet machine fails here instead of in CI.
#
#   scripts/stress.sh go test -count=50 -run TestUpThenPing ./netns
#   scripts/stress.sh .ci/run
#
# LABCTL_HOGS sets the number of hogs (default: the number of CPUs). The
# hogs are shell loops, so nothing needs to be installed; they end with the
# command, on failure and on Ctrl-C too.
set -euo pipefail
if [[ $# -eq 0 ]]; then
	echo "usage: scripts/stress.sh COMMAND [ARG...]" >&2
	exit 2
fi
hogs=${LABCTL_HOGS:-$(nproc)}
pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; }
trap stop EXIT
for ((i = 0; i < hogs; i++)); do
	(while :; do :; done) &
	pids+=($!)
done
echo "stress: $hogs CPU hogs running beside: $*" >&2
start=$(date +%s)
rc=0
"$@" || rc=$?
echo "stress: exit $rc after $(($(date +%s) - start)) s" >&2
exit $rc
