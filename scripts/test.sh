#!/usr/bin/env bash
# The test suite, as CI runs it (.ci/run) and as a developer runs it:
#
#   sudo scripts/test.sh
#
# It installs what is missing (scripts/deps.sh), checks formatting, vet,
# staticcheck and the generated protobuf code, runs every test (the
# privileged ones need root: they skip without it, and fail instead when
# LABCTL_REQUIRE_PRIV=1, which .ci/run sets; the trace tests run against a
# real Jaeger built from tools/jaeger), then fuzzes the topology loader for
# a short budget.
#
# Jaeger takes ~10 minutes to build the first time and its build leaves a
# core idle much of the time, so it builds in the background while the rest
# runs; only the tests that need it wait for it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH=$PATH:/usr/local/go/bin

step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)" >&2; }
# The tests that need the Jaeger binary wait for the one build below; nothing
# else builds it (a second build beside it would double the longest step).
jaeger_tests='TestTracesInJaeger|TestJaegerUIShowsRun|TestJaegerEndToEnd'

step "dependencies"
scripts/deps.sh

# The CNI plugins go.mod pins, for the cni link tests (labtest.CNIPlugins
# finds them through CNI_PATH).
step "CNI plugins"
scripts/cni.sh
export CNI_PATH=$repo/bin/cni

step "Jaeger build, in the background"
jaeger_log=$(mktemp)
scripts/jaeger.sh build >"$jaeger_log" 2>&1 &
jaeger_pid=$!
trap 'kill $jaeger_pid 2>/dev/null || true; rm -f "$jaeger_log"' EXIT

step "gofmt and go vet"
unformatted=$(git ls-files -z '*.go' | xargs -0 gofmt -l)
if [[ -n $unformatted ]]; then
	echo "not gofmt-formatted:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...

# staticcheck's default checks; staticcheck is pinned in
# tools/staticcheck/go.mod and built once into bin/, as buf is.
step "staticcheck"
staticcheck=${LABCTL_TOOLS_BIN:-$repo/bin}/staticcheck
if [[ ! -x $staticcheck || tools/staticcheck/go.mod -nt $staticcheck ]]; then
	go build -C tools/staticcheck -o "$staticcheck" honnef.co/go/tools/cmd/staticcheck
fi
"$staticcheck" ./...

step "protobuf: buf lint, regenerate, compare with the commit"
scripts/proto.sh --check

step "BPF: compile the packet-path programs, compare with the commit"
scripts/bpf.sh --check

# Screenshots the browser tests take (reports, the Jaeger UI) are kept
# here for a person to look at after the run.
export LABCTL_ARTIFACTS=${LABCTL_ARTIFACTS:-$repo/artifacts}

step "go test (LABCTL_REQUIRE_PRIV=${LABCTL_REQUIRE_PRIV:-0})"
go test -count=1 -timeout 20m -skip "$jaeger_tests" ./...

step "waiting for the Jaeger build"
if ! wait "$jaeger_pid"; then
	cat "$jaeger_log" >&2
	echo "the Jaeger build failed" >&2
	exit 1
fi

step "the tests against Jaeger"
go test -count=1 -timeout 10m -run "$jaeger_tests" ./labctl ./traces

# A count, not a duration: with a duration, Go 1.26's fuzzing coordinator
# can report its own deadline as a failure (go.dev/issue/75804, fixed in
# Go 1.27). 150,000 inputs take 10-30 s here.
step "fuzz the topology loader (${LABCTL_FUZZ_TIME:-150000x})"
go test -run='^$' -fuzz=FuzzDecode -fuzztime="${LABCTL_FUZZ_TIME:-150000x}" ./topologies

step "all tests passed"
