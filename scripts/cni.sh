#!/usr/bin/env bash
# Builds the CNI plugins that go.mod pins (its tool block names them, from
# github.com/containernetworking/plugins) into bin/cni, where labctl looks for
# them beside bin/labctl:
#
#   scripts/cni.sh [DIR]
#
# Static binaries (CGO_ENABLED=0), stamped with the module's version so that
# `bridge` without CNI_COMMAND says which it is. Nothing is rebuilt when DIR
# already holds this version's plugins.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH=$PATH:/usr/local/go/bin
out=${1:-$repo/bin/cni}
version=$(go list -m -f '{{.Version}}' github.com/containernetworking/plugins)
if [[ -f $out/.version && $(cat "$out/.version") == "$version" ]]; then
	echo "cni: the plugins $version are in $out" >&2
	exit 0
fi
mkdir -p "$out"
echo "cni: building the plugins $version into $out" >&2
# shellcheck disable=SC2046 # one argument per package
CGO_ENABLED=0 go build -trimpath \
	-ldflags "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$version" \
	-o "$out/" $(go list tool | grep '^github.com/containernetworking/plugins/')
echo "$version" >"$out/.version"
