#!/usr/bin/env bash
# Lints the .proto files with buf (STANDARD rules) and regenerates the Go code
# with the local plugins pinned in go.mod (protoc-gen-go, protoc-gen-go-grpc).
# buf itself is pinned in tools/proto/go.mod and built once into bin/.
#
#   scripts/proto.sh          lint and generate
#   scripts/proto.sh --check  lint, generate, and fail if the generated code
#                             differs from what is committed (CI)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${LABCTL_TOOLS_BIN:-$repo/bin}
buf=$bin/buf

if [[ ! -x $buf || $repo/tools/proto/go.mod -nt $buf ]]; then
	echo "proto: building buf (first time takes a few minutes)" >&2
	go build -C "$repo/tools/proto" -o "$buf" github.com/bufbuild/buf/cmd/buf
fi

cd "$repo/proto"
"$buf" lint
"$buf" generate
echo "proto: lint clean, code generated" >&2

if [[ ${1:-} == --check ]]; then
	cd "$repo"
	if ! git diff --exit-code --stat -- proto/ || [[ -n $(git ls-files --others --exclude-standard proto/) ]]; then
		echo "proto: generated code differs from the committed code; run scripts/proto.sh and commit" >&2
		exit 1
	fi
	echo "proto: generated code matches the commit" >&2
fi
