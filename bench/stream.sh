#!/usr/bin/env bash
# Playback benchmark: our stream service against nginx (sendfile on) serving the very same file
# from the same data directory, back to back in one run, on loopback. Loads: random 1 MiB Range
# requests on a ~100 MB MP4 at 16 and 64 connections, and whole-file GETs of a ~2 MB clip.
# Reports MiB/s, p50/p99, server CPU (% of one core) and peak RSS, and the ratio ours/nginx.
#
# Usage: bench/stream.sh [duration, default 10s]. Needs cargo, ffmpeg, nginx, wrk, curl, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DUR=${1:-10s}
THREADS=2

(cd "$ROOT" && cargo build --release --quiet)
TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$TARGET/release/douyin_club"
WORK=$(mktemp -d)
# nginx's workers drop root privileges: they must be able to read the data directory.
chmod 755 "$WORK"
PID=; NGINX_PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_up() { for _ in $(seq 1 1000); do curl -fs -o /dev/null "$1" && return 0; sleep 0.01; done; return 1; }
json_field() { python3 -c "import sys,json; print(json.load(sys.stdin)['$1'])"; }

echo "generating clips with ffmpeg..." >&2
ffmpeg -v error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -t 60 -c:v mpeg4 -b:v 13M \
  -f mp4 "$WORK/big.mp4"
ffmpeg -v error -y -f lavfi -i testsrc2=size=640x360:rate=30 -t 4 -c:v mpeg4 -b:v 4M \
  -f mp4 "$WORK/small.mp4"
BIG_SIZE=$(stat -c %s "$WORK/big.mp4"); SMALL_SIZE=$(stat -c %s "$WORK/small.mp4")

API_PORT=$(free_port); STREAM_PORT=$(free_port); SCHED_PORT=$(free_port); WEB_PORT=$(free_port)
NGINX_PORT=$(free_port)
API="http://127.0.0.1:$API_PORT"; STREAM="http://127.0.0.1:$STREAM_PORT"
NGINX="http://127.0.0.1:$NGINX_PORT"
# The limiter stays on the path (every request takes a token and a slot) but never refuses.
RUST_LOG=warn "$BIN" --data-dir "$WORK/data" --api-addr "127.0.0.1:$API_PORT" \
  --stream-addr "127.0.0.1:$STREAM_PORT" --scheduler-addr "127.0.0.1:$SCHED_PORT" \
  --web-addr "127.0.0.1:$WEB_PORT" --stream-rate 1000000 --stream-burst 1000000 \
  --max-streams 1024 --max-upload-bytes 2147483648 &
PID=$!
wait_up "$API/healthz"; wait_up "$STREAM/healthz"

SESSION=$(curl -fsS -H 'Content-Type: application/json' -d '{"user_name":"bench","pwd":"password1"}' \
  "$API/user" | json_field session_id)
upload() {
  local vid
  vid=$(curl -fsS -H "X-Session-Id: $SESSION" -H 'Content-Type: application/json' \
    -d '{"name":"bench"}' "$API/user/bench/videos" | json_field id)
  curl -fsS -o /dev/null -X POST -T "$1" -H "X-Session-Id: $SESSION" \
    -H 'Content-Type: video/mp4' "$STREAM/upload/$vid"
  echo "$vid"
}
BIG=$(upload "$WORK/big.mp4"); SMALL=$(upload "$WORK/small.mp4")

mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type video/mp4;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location /videos/ { alias $WORK/data/videos/; etag on; }
  }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
NGINX_PID=$!
wait_up "$NGINX/videos/$SMALL" || { cat "$WORK/nginx/error.log" >&2; exit 1; }
cmp <(curl -fsS "$NGINX/videos/$BIG") "$WORK/big.mp4"
cmp <(curl -fsS "$STREAM/videos/$BIG") "$WORK/big.mp4"

cat > "$WORK/range.lua" <<'LUA'
local size = tonumber(os.getenv("SIZE"))
local path = os.getenv("VPATH")
local counter = 0
setup = function(thread) counter = counter + 1; thread:set("seed", counter) end
init = function() math.randomseed(seed * 7919 + os.time()) end
request = function()
  local first = math.random(0, size - 1048576)
  return wrk.format("GET", path, { ["Range"] = "bytes=" .. first .. "-" .. (first + 1048575) })
end
LUA
cat > "$WORK/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.1f %.2f %.2f %d\n",
    summary.bytes / (summary.duration / 1e6) / 1048576,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad))
end
LUA
cat "$WORK/report.lua" >> "$WORK/range.lua"

# pids of a server: ours is one process; nginx is its master and workers.
pids_of() { if [ "$1" = ours ]; then echo "$PID"; else echo "$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')"; fi; }
ticks() { local t=0; for p in $1; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
rss() { local r=0; for p in $1; do r=$((r + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $r; }

# run SERVER LABEL URL CONNS [wrk script]: one wrk run with CPU and peak-RSS sampling.
run() {
  local server=$1 label=$2 url=$3 conns=$4 script=${5:-$WORK/report.lua}
  local pids; pids=$(pids_of "$server")
  local hz; hz=$(getconf CLK_TCK)
  local t0; t0=$(ticks "$pids")
  local peak=0
  ( while :; do rss "$pids"; sleep 0.2; done ) > "$WORK/rss.$label" &
  local sampler=$!
  local s0; s0=$(date +%s%N)
  local out; out=$(wrk -t$THREADS -c"$conns" -d"$DUR" -s "$script" "$url")
  local s1; s1=$(date +%s%N)
  kill $sampler; wait $sampler 2>/dev/null || true
  local t1; t1=$(ticks "$pids")
  peak=$(sort -n "$WORK/rss.$label" | tail -1)
  local cpu; cpu=$(python3 -c "print(round(100*($t1-$t0)/$hz/(($s1-$s0)/1e9)))")
  local r; r=$(echo "$out" | awk '/^RESULT/ {print $2, $3, $4, $5}')
  echo "$label $r $cpu $((peak / 1024))"
}

echo "| load | server | MiB/s | p50 ms | p99 ms | errors | CPU % | peak RSS MiB |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
declare -A MIBS
for load in range16 range64 whole16 whole64; do
  case $load in
    range16) conns=16; kind=range ;; range64) conns=64; kind=range ;;
    whole16) conns=16; kind=whole ;; whole64) conns=64; kind=whole ;;
  esac
  for server in ours nginx; do
    base=$STREAM; [ $server = nginx ] && base=$NGINX
    if [ $kind = range ]; then
      line=$(SIZE=$BIG_SIZE VPATH="/videos/$BIG" run $server "$load-$server" "$base" $conns "$WORK/range.lua")
    else
      line=$(run $server "$load-$server" "$base/videos/$SMALL" $conns)
    fi
    read -r _ mib p50 p99 bad cpu peak <<<"$line"
    MIBS[$load-$server]=$mib
    echo "| $load ($conns conns) | $server | $mib | $p50 | $p99 | $bad | $cpu | $peak |"
  done
done
echo
echo "| load | ours/nginx (MiB/s) |"
echo "|---|---:|"
for load in range16 range64 whole16 whole64; do
  echo "| $load | $(python3 -c "print(round(${MIBS[$load-ours]}/${MIBS[$load-nginx]}, 2))") |"
done
echo
echo "big clip: $BIG_SIZE bytes; small clip: $SMALL_SIZE bytes; wrk -t$THREADS -d$DUR; $(nproc) cores"
