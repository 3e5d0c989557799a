#!/usr/bin/env bash
# The test suite, as CI runs it (.ci/run) and as a developer runs it:
#
#   sudo scripts/test.sh
#
# It installs what is missing (scripts/deps.sh), checks formatting, vet and
# the generated protobuf code, runs every test (the privileged ones need
# root: they skip without it, and fail instead when LABCTL_REQUIRE_PRIV=1,
# which .ci/run sets; the trace tests run against a real Jaeger built from
# tools/jaeger), then fuzzes the topology loader for a short budget.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH=$PATH:/usr/local/go/bin

step() { printf '\n== %s\n' "$*" >&2; }

step "dependencies"
scripts/deps.sh

step "gofmt and go vet"
unformatted=$(git ls-files -z '*.go' | xargs -0 gofmt -l)
if [[ -n $unformatted ]]; then
	echo "not gofmt-formatted:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...

step "protobuf: buf lint, regenerate, compare with the commit"
scripts/proto.sh --check

step "Jaeger for the trace tests (built once from tools/jaeger; the first build takes ~10 minutes)"
scripts/jaeger.sh build

step "go test (LABCTL_REQUIRE_PRIV=${LABCTL_REQUIRE_PRIV:-0})"
go test -count=1 -timeout 20m ./...

step "fuzz the topology loader (${LABCTL_FUZZ_TIME:-20s})"
go test -run='^$' -fuzz=FuzzDecode -fuzztime="${LABCTL_FUZZ_TIME:-20s}" ./topologies

step "all tests passed"
