#!/usr/bin/env bash
# scripts/jaeger.sh: build and run a local Jaeger v2 (all-in-one, in-memory storage)
# without Docker, from the Go module pinned in tools/jaeger (github.com/jaegertracing/jaeger
# v1.75.0, whose cmd/jaeger is Jaeger v2).
#
# Usage: scripts/jaeger.sh build|start|stop|restart|status
#   build    build the binary if it is missing or older than tools/jaeger/go.mod or go.sum
#            (the Go build cache makes a rebuild cheap anyway). Verifies every module
#            against the committed tools/jaeger/go.sum (-mod=readonly, default GOSUMDB).
#   start    build if needed, start Jaeger in the background, wait until the query API
#            answers and the OTLP gRPC port accepts connections. Idempotent: if it is
#            already running and healthy it says so and exits 0.
#   stop     stop the Jaeger started by `start` (SIGTERM, then SIGKILL after
#            LABCTL_JAEGER_STOP_TIMEOUT seconds), remove the pid file.
#   restart  stop, then start.
#   status   print "running (pid N) ..." and exit 0, or "not running" and exit 1.
#
# Endpoints (defaults):
#   OTLP gRPC         127.0.0.1:4317   (OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317)
#   OTLP HTTP         127.0.0.1:4318
#   UI + HTTP API     http://127.0.0.1:16686   (/api/services, /api/traces/<id>,
#                     /api/v3/services, /api/v3/traces/<id>; UI link: /trace/<id>)
#   query gRPC API    127.0.0.1:16685
#
# Environment (all optional):
#   LABCTL_TOOLS_BIN             directory of built tools     (default: $REPO/bin)
#   LABCTL_JAEGER_BIN            the Jaeger binary            (default: $LABCTL_TOOLS_BIN/jaeger)
#   LABCTL_JAEGER_DIR            pid file + log directory     (default: /run/labctl/jaeger)
#                                files: jaeger.pid, jaeger.log
#   LABCTL_JAEGER_CONFIG         Jaeger config                (default: $REPO/tools/jaeger/config.yaml)
#   LABCTL_JAEGER_HOST           address every listener binds (default: 127.0.0.1)
#   LABCTL_JAEGER_OTLP_GRPC_PORT OTLP gRPC receiver port      (default: 4317)
#   LABCTL_JAEGER_OTLP_HTTP_PORT OTLP HTTP receiver port      (default: 4318)
#   LABCTL_JAEGER_QUERY_HTTP_PORT UI + HTTP query API port    (default: 16686)
#   LABCTL_JAEGER_QUERY_GRPC_PORT gRPC query API port         (default: 16685)
#   LABCTL_JAEGER_MAX_TRACES     in-memory store bound        (default: 100000 traces)
#   LABCTL_JAEGER_LOG_LEVEL      Jaeger's own log level       (default: info)
#   LABCTL_JAEGER_UI_ASSETS      directory of a built jaeger-ui; without it the UI
#                                pages are a placeholder (the Go module ships no UI
#                                build), the HTTP/gRPC APIs work regardless
#   LABCTL_JAEGER_START_TIMEOUT  seconds to wait for readiness (default: 60)
#   LABCTL_JAEGER_STOP_TIMEOUT   seconds to wait for exit before SIGKILL (default: 30)
#   GO                           the go command               (default: go)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOL_DIR="$REPO/tools/jaeger"

BIN_DIR=${LABCTL_TOOLS_BIN:-$REPO/bin}
JAEGER_BIN=${LABCTL_JAEGER_BIN:-$BIN_DIR/jaeger}
[[ $JAEGER_BIN == /* ]] || JAEGER_BIN="$PWD/$JAEGER_BIN" # go build -C changes directory
RUN_DIR=${LABCTL_JAEGER_DIR:-/run/labctl/jaeger}
PID_FILE="$RUN_DIR/jaeger.pid"
LOG_FILE="$RUN_DIR/jaeger.log"
CONFIG=${LABCTL_JAEGER_CONFIG:-$TOOL_DIR/config.yaml}
START_TIMEOUT=${LABCTL_JAEGER_START_TIMEOUT:-60}
STOP_TIMEOUT=${LABCTL_JAEGER_STOP_TIMEOUT:-30}
GO=${GO:-go}

# Exported: tools/jaeger/config.yaml reads them as ${env:NAME:-default}.
export LABCTL_JAEGER_HOST=${LABCTL_JAEGER_HOST:-127.0.0.1}
export LABCTL_JAEGER_OTLP_GRPC_PORT=${LABCTL_JAEGER_OTLP_GRPC_PORT:-4317}
export LABCTL_JAEGER_OTLP_HTTP_PORT=${LABCTL_JAEGER_OTLP_HTTP_PORT:-4318}
export LABCTL_JAEGER_QUERY_HTTP_PORT=${LABCTL_JAEGER_QUERY_HTTP_PORT:-16686}
export LABCTL_JAEGER_QUERY_GRPC_PORT=${LABCTL_JAEGER_QUERY_GRPC_PORT:-16685}
export LABCTL_JAEGER_MAX_TRACES=${LABCTL_JAEGER_MAX_TRACES:-100000}
export LABCTL_JAEGER_LOG_LEVEL=${LABCTL_JAEGER_LOG_LEVEL:-info}
export LABCTL_JAEGER_UI_ASSETS=${LABCTL_JAEGER_UI_ASSETS:-}

HOST=$LABCTL_JAEGER_HOST
QUERY_URL="http://$HOST:$LABCTL_JAEGER_QUERY_HTTP_PORT"

log() { printf 'jaeger.sh: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# port_open HOST PORT: true if a TCP connection can be made.
port_open() {
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# http_ok URL: true if GET URL answers 200.
http_ok() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsS -o /dev/null --max-time 5 "$1" 2>/dev/null
		return
	fi
	# Fallback without curl: a bare HTTP/1.0 request over bash's /dev/tcp.
	local rest=${1#http://} hostport path line
	hostport=${rest%%/*}
	path=/${rest#*/}
	(
		exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}" || exit 1
		printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$hostport" >&3
		IFS= read -r -t 5 line <&3 || exit 1
		[[ $line == HTTP/1.?' 200'* ]]
	) 2>/dev/null
}

healthy() {
	http_ok "$QUERY_URL/api/services" && port_open "$HOST" "$LABCTL_JAEGER_OTLP_GRPC_PORT"
}

# running_pid: print the pid from the pid file if that process is alive and is Jaeger.
running_pid() {
	local pid
	[[ -f $PID_FILE ]] || return 1
	pid=$(<"$PID_FILE")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	# Guard against a recycled pid: the process must be our binary.
	if [[ -r /proc/$pid/cmdline ]]; then
		tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q jaeger || return 1
	fi
	printf '%s\n' "$pid"
}

cmd_build() {
	local gomod="$TOOL_DIR/go.mod" gosum="$TOOL_DIR/go.sum"
	[[ -f $gomod && -f $gosum ]] || die "missing $gomod or $gosum"
	if [[ -x $JAEGER_BIN && ! $gomod -nt $JAEGER_BIN && ! $gosum -nt $JAEGER_BIN ]]; then
		log "up to date: $JAEGER_BIN"
		return 0
	fi
	command -v "$GO" >/dev/null 2>&1 || die "go not found (set GO=/path/to/go)"
	mkdir -p "$(dirname "$JAEGER_BIN")"
	log "building Jaeger v2 from tools/jaeger into $JAEGER_BIN (a first build downloads ~260 MB of modules and compiles for 10-20 minutes on 2 cores)..."
	local start=$SECONDS tmp="$JAEGER_BIN.tmp.$$"
	# -mod=readonly: every module is checked against the committed go.sum, whatever
	# GOFLAGS says. GOWORK=off: never let a go.work above pull in other modules.
	if ! GOWORK=off "$GO" build -C "$TOOL_DIR" -mod=readonly \
		-ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=v1.75.0" \
		-o "$tmp" github.com/jaegertracing/jaeger/cmd/jaeger; then
		rm -f "$tmp"
		die "go build failed"
	fi
	mv -f "$tmp" "$JAEGER_BIN"
	log "built $JAEGER_BIN in $((SECONDS - start))s"
}

cmd_start() {
	local pid
	if pid=$(running_pid); then
		if wait_ready "$pid"; then
			log "already running (pid $pid), query API $QUERY_URL, OTLP gRPC $HOST:$LABCTL_JAEGER_OTLP_GRPC_PORT"
			return 0
		fi
		die "pid $pid is running but not healthy after ${START_TIMEOUT}s; see $LOG_FILE (try: $0 restart)"
	fi
	if healthy; then
		log "a Jaeger not started by this script already answers on $QUERY_URL and OTLP gRPC $HOST:$LABCTL_JAEGER_OTLP_GRPC_PORT; using it"
		return 0
	fi
	local port
	for port in "$LABCTL_JAEGER_OTLP_GRPC_PORT" "$LABCTL_JAEGER_OTLP_HTTP_PORT" \
		"$LABCTL_JAEGER_QUERY_HTTP_PORT" "$LABCTL_JAEGER_QUERY_GRPC_PORT"; do
		if port_open "$HOST" "$port"; then
			die "$HOST:$port is already in use by another process"
		fi
	done
	cmd_build
	[[ -f $CONFIG ]] || die "missing config $CONFIG"
	mkdir -p "$RUN_DIR" || die "cannot create $RUN_DIR (set LABCTL_JAEGER_DIR)"
	rm -f "$PID_FILE"
	log "starting $JAEGER_BIN --config $CONFIG (log: $LOG_FILE)"
	# setsid: its own session, so it outlives the caller and a Ctrl-C in the caller's
	# terminal does not reach it. In a script without job control the background job
	# is not a process-group leader, so setsid execs in place and $! is Jaeger's pid.
	setsid "$JAEGER_BIN" --config "$CONFIG" </dev/null >>"$LOG_FILE" 2>&1 &
	pid=$!
	printf '%s\n' "$pid" >"$PID_FILE"
	if ! wait_ready "$pid"; then
		log "not ready after ${START_TIMEOUT}s; last log lines:"
		tail -n 30 "$LOG_FILE" >&2 || true
		stop_pid "$pid"
		rm -f "$PID_FILE"
		exit 1
	fi
	log "running (pid $pid): UI/API $QUERY_URL, OTLP gRPC $HOST:$LABCTL_JAEGER_OTLP_GRPC_PORT, OTLP HTTP $HOST:$LABCTL_JAEGER_OTLP_HTTP_PORT"
}

# wait_ready PID: wait until healthy, failing early if PID exits.
wait_ready() {
	local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
	while ((SECONDS < deadline)); do
		kill -0 "$pid" 2>/dev/null || {
			log "Jaeger (pid $pid) exited"
			return 1
		}
		healthy && return 0
		sleep 0.2
	done
	return 1
}

# stop_pid PID: SIGTERM, wait, SIGKILL.
stop_pid() {
	local pid=$1 deadline=$((SECONDS + STOP_TIMEOUT))
	kill -TERM "$pid" 2>/dev/null || return 0
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			log "pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.2
			break
		fi
		sleep 0.1
	done
}

cmd_stop() {
	local pid
	if pid=$(running_pid); then
		log "stopping (pid $pid)"
		stop_pid "$pid"
		log "stopped"
	else
		log "not running"
	fi
	rm -f "$PID_FILE"
}

cmd_status() {
	local pid
	if pid=$(running_pid); then
		if healthy; then
			echo "running (pid $pid): UI/API $QUERY_URL, OTLP gRPC $HOST:$LABCTL_JAEGER_OTLP_GRPC_PORT, OTLP HTTP $HOST:$LABCTL_JAEGER_OTLP_HTTP_PORT"
		else
			echo "running (pid $pid) but not answering on $QUERY_URL/api/services"
		fi
		return 0
	fi
	echo "not running"
	return 1
}

usage() {
	sed -n '2,/^set -euo pipefail/{/^set /d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	exit "${1:-2}"
}

case ${1:-} in
build) cmd_build ;;
start) cmd_start ;;
stop) cmd_stop ;;
restart)
	cmd_stop
	cmd_start
	;;
status) cmd_status ;;
-h | --help | help) usage 0 ;;
*) usage ;;
esac
