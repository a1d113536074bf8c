#!/usr/bin/env bash
# Upload benchmark: a 1 GiB raw upload to the stream service against `cp` of the same file to
# the same disk (with its fsync, as the upload does one), in one run: three rounds, each a `cp`
# then an upload, so that the disk's moods (a VM's write-back varies by 3x from minute to
# minute) reach both alike; medians. Reports throughput, the ratio upload/cp, and the server's
# peak RSS above idle.
#
# Usage: bench/upload.sh [size in MiB, default 1024]. Needs cargo, curl, python3.
#   ROUNDS=n  rounds (default 3).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MIB=${1:-1024}

(cd "$ROOT" && cargo build --release --quiet)
TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$TARGET/release/douyin_club"
# The data dir sits beside the source file on the same disk as the copy.
WORK=$(mktemp -d -p "${BENCH_DIR:-$ROOT}" .bench-upload.XXXXXX)
PID=
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi
  wait 2>/dev/null || true; rm -rf "$WORK"
}
trap cleanup EXIT
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_up() { for _ in $(seq 1 1000); do curl -fs -o /dev/null "$1" && return 0; sleep 0.01; done; return 1; }
json_field() { python3 -c "import sys,json; print(json.load(sys.stdin)['$1'])"; }
now() { date +%s%N; }

# An MP4 signature, then random bytes (incompressible, no sparse shortcuts).
{ printf '\0\0\0\030ftypisom\0\0\2\0isomiso2'; head -c $((MIB * 1048576 - 24)) /dev/urandom; } \
  > "$WORK/src.mp4"
SIZE=$(stat -c %s "$WORK/src.mp4")

API_PORT=$(free_port); STREAM_PORT=$(free_port); SCHED_PORT=$(free_port); WEB_PORT=$(free_port)
API="http://127.0.0.1:$API_PORT"; STREAM="http://127.0.0.1:$STREAM_PORT"
RUST_LOG=warn "$BIN" --data-dir "$WORK/data" --api-addr "127.0.0.1:$API_PORT" \
  --stream-addr "127.0.0.1:$STREAM_PORT" --scheduler-addr "127.0.0.1:$SCHED_PORT" \
  --web-addr "127.0.0.1:$WEB_PORT" --max-upload-bytes $((SIZE + 1)) &
PID=$!
wait_up "$API/healthz"; wait_up "$STREAM/healthz"
SESSION=$(curl -fsS -H 'Content-Type: application/json' -d '{"user_name":"bench","pwd":"password1"}' \
  "$API/user" | json_field session_id)
sleep 1
idle=$(awk '/^VmRSS/ {print $2}' "/proc/$PID/status")
mibs() { python3 -c "print(round($SIZE/1048576/(($2-$1)/1e9), 1))"; }
CP=(); UP=()
for round in $(seq 1 "${ROUNDS:-3}"); do
  sync; sleep 2
  t0=$(now); cp "$WORK/src.mp4" "$WORK/copy.mp4"; sync "$WORK/copy.mp4"; t1=$(now)
  CP+=("$(mibs "$t0" "$t1")")
  rm -f "$WORK/copy.mp4"; sync; sleep 2
  VID=$(curl -fsS -H "X-Session-Id: $SESSION" -H 'Content-Type: application/json' \
    -d '{"name":"bench"}' "$API/user/bench/videos" | json_field id)
  t0=$(now)
  # -T streams the file (curl never holds it whole); the upload ends with the server's fsync.
  curl -fsS -o /dev/null -X POST -T "$WORK/src.mp4" -H "X-Session-Id: $SESSION" \
    -H 'Content-Type: video/mp4' "$STREAM/upload/$VID"
  t1=$(now)
  UP+=("$(mibs "$t0" "$t1")")
  cmp "$WORK/src.mp4" "$WORK/data/videos/$VID"
  rm -f "$WORK/data/videos/$VID"
  echo "round $round: cp + fsync ${CP[-1]} MiB/s, upload ${UP[-1]} MiB/s" >&2
done
peak=$(awk '/^VmHWM/ {print $2}' "/proc/$PID/status")
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
cp_mibs=$(median "${CP[@]}"); up_mibs=$(median "${UP[@]}")

echo "| what | MiB/s |"
echo "|---|---:|"
echo "| cp + fsync (reference), median | $cp_mibs |"
echo "| POST /upload (raw, curl -T), median | $up_mibs |"
echo "| ratio upload/cp | $(python3 -c "print(round($up_mibs/$cp_mibs, 2))") |"
echo
echo "RSS: idle $((idle / 1024)) MiB, peak $((peak / 1024)) MiB, peak above idle $(((peak - idle) / 1024)) MiB"
echo "file: $SIZE bytes; $(nproc) cores"
