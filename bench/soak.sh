#!/usr/bin/env bash
# Soak benchmark: one release node (all four services) on loopback ports over a temporary data
# dir, under mixed traffic for DURATION seconds: sign-ins (wrong passwords too) and logouts,
# feeds, comments, Range playback, raw and multipart uploads, deletes, web pages, and clients
# that cut their connection mid-upload and mid-playback. Every SAMPLE_SECS it records the
# process's RSS (/proc/PID/status) and open fds (/proc/PID/fd); it counts 5xx both as the
# clients saw them and in the services' /metrics. Targets: RSS growth after the first minute
# under 5 %, fds back to the idle figure once the load stops, no 5xx (exit status 1 if missed).
# Only the HTTP API of API.md is used. The load is bench/soak_load.py (python3 stdlib).
#
#   bench/soak.sh                 # 600 s
#   bench/soak.sh 120             # a short run
#   BIN=path/to/douyin_club WORKERS=8 SAMPLE_SECS=60 SETTLE_SECS=10 bench/soak.sh 600
#
# Needs: cargo (unless BIN=), curl, python3.
set -euo pipefail
DURATION=${1:-600}
WORKERS=${WORKERS:-8}
SAMPLE_SECS=${SAMPLE_SECS:-60}
# Past the server's 5 s keep-alive, so connections the load left open are closed by then.
SETTLE_SECS=${SETTLE_SECS:-10}
source "$(dirname "$0")/lib.sh"
root=$ROOT
work=$(mktemp -d)
copy_binary "$work/douyin_club"

pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
wait_up() {
  for _ in $(seq 1 1000); do curl -fs -o /dev/null "http://$1/healthz" && return 0; sleep 0.01; done
  echo "nothing answers on $1:" >&2; cat "$work/node.log" >&2; exit 1
}

api=127.0.0.1:$(free_port); stream=127.0.0.1:$(free_port)
web=127.0.0.1:$(free_port); sched=127.0.0.1:$(free_port)
RUST_LOG=warn "$work/douyin_club" --data-dir "$work/data" --api-addr "$api" \
  --stream-addr "$stream" --web-addr "$web" --scheduler-addr "$sched" >"$work/node.log" 2>&1 &
pid=$!
for a in "$api" "$stream" "$web" "$sched"; do wait_up "$a"; done
sleep 1 # start-up work (the first tick, reconciliation) done before the idle figures

echo "## Soak: $(date -u +%Y-%m-%d), commit $(cd "$root" && git rev-parse --short HEAD)"
echo
set +e
python3 "$root/bench/soak_load.py" "$api" "$stream" "$web" "$sched" "$pid" "$DURATION" \
  "$SAMPLE_SECS" "$SETTLE_SECS" "$WORKERS"
status=$?
set -e
warnings=$(grep -c -E ' (WARN|ERROR) ' "$work/node.log" || true)
echo
echo "Server log: $warnings warning/error lines."
grep -E ' (WARN|ERROR) ' "$work/node.log" | head -5 | sed 's/^/    /'
exit $status
