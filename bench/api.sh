#!/usr/bin/env bash
# Benchmark of the api service: wrk on loopback, 64 connections, against the feed, one video,
# and authenticated comment posting, with /healthz of the same server as the ceiling, all in one
# run. Also idle RSS and start-up time to a healthy /healthz on an empty data dir.
#
# Usage: bench/api.sh [duration, default 10s]. Needs wrk, curl, python3, ffmpeg.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DUR=${1:-10s}
CONNS=64
THREADS=2

DATA=$(mktemp -d)
copy_binary "$DATA/douyin_club"
BIN="$DATA/douyin_club"
trap 'kill $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
API_PORT=$(free_port); STREAM_PORT=$(free_port); SCHED_PORT=$(free_port); WEB_PORT=$(free_port)
API="http://127.0.0.1:$API_PORT"; STREAM="http://127.0.0.1:$STREAM_PORT"

t0=$(date +%s%N)
RUST_LOG=warn "$BIN" --data-dir "$DATA/data" --api-addr "127.0.0.1:$API_PORT" \
  --stream-addr "127.0.0.1:$STREAM_PORT" --scheduler-addr "127.0.0.1:$SCHED_PORT" \
  --web-addr "127.0.0.1:$WEB_PORT" --stream-rate 100000 --stream-burst 100000 &
PID=$!
wait_healthy "$API"
t1=$(date +%s%N)
startup_ms=$(( (t1 - t0) / 1000000 ))
sleep 1
idle_rss=$(rss_kib $PID)

# Fixture: one user, 20 ready videos (uploaded for real through the stream service).
CLIP="$DATA/clip.mp4"
ffmpeg -loglevel error -f lavfi -i testsrc=duration=1:size=160x120:rate=10 -pix_fmt yuv420p "$CLIP"
SID=$(curl -fs "$API/user" -H 'content-type: application/json' \
  -d '{"user_name":"bench","pwd":"benchpass"}' | json_field session_id)
for i in $(seq 1 20); do
  VID=$(curl -fs "$API/user/bench/videos" -H "X-Session-Id: $SID" -H 'content-type: application/json' \
    -d "{\"name\":\"clip $i\"}" | json_field id)
  curl -fs -o /dev/null "$STREAM/upload/$VID" -H "X-Session-Id: $SID" \
    -H 'content-type: video/mp4' --data-binary @"$CLIP"
done
[ "$(curl -fs "$API/videos?limit=20" | python3 -c 'import sys,json; print(len(json.load(sys.stdin)["videos"]))')" = 20 ]

LUA="$DATA/comment.lua"
cat > "$LUA" <<LUA
wrk.method = "POST"
wrk.body = '{"content":"a benchmark comment"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Session-Id"] = "$SID"
LUA

echo "douyin_club api benchmark: wrk -t$THREADS -c$CONNS -d$DUR, $(nproc) cores, $(date -u +%F)"
ceiling=$(wrk_summary "GET /healthz (ceiling)" -t$THREADS -c$CONNS -d"$DUR" "$API/healthz")
feed=$(wrk_summary "GET /videos?limit=20" -t$THREADS -c$CONNS -d"$DUR" "$API/videos?limit=20")
one=$(wrk_summary "GET /user/:u/videos/:vid" -t$THREADS -c$CONNS -d"$DUR" "$API/user/bench/videos/$VID")
post=$(wrk_summary "POST /videos/:vid/comments" -t$THREADS -c$CONNS -d"$DUR" -s "$LUA" "$API/videos/$VID/comments")
load_rss=$(rss_kib $PID)
stored=$(curl -fs "$API/videos/$VID/comments?limit=1" >/dev/null && sqlite3 "$DATA/data/douyin.sqlite3" 'SELECT COUNT(*) FROM comments' 2>/dev/null || echo "?")

rps() { echo "$1" | awk '{for(i=1;i<=NF;i++) if ($i=="req/s") print $(i-1)}'; }
c=$(rps "$ceiling")
printf '%s\n' "$ceiling"
for line in "$feed" "$one" "$post"; do
  r=$(rps "$line")
  printf '%s  ratio %.2f\n' "$line" "$(python3 -c "print($r/$c)")"
done
echo "comments stored during the run: $stored"
echo "idle RSS: $((idle_rss / 1024)) MiB ($idle_rss KiB); RSS after the load: $((load_rss / 1024)) MiB"
echo "start-up to healthy /healthz on an empty data dir: ${startup_ms} ms"
