#!/usr/bin/env bash
# Scaling of the api behind nginx (issue 10): the feed (GET /videos?limit=20) and authenticated
# comment posts, through one nginx upstream of 1 api node, then of 2 api nodes on the same
# SQLite data dir, in one run; with the CPU each request costs (user + system time of the api
# nodes and of nginx, over the requests served), since on a 2-core machine the cores bound the
# throughput long before the nodes do. PostgreSQL (--database-url) is not built yet: when it is,
# this script gains its rows.
#
# Usage: bench/cluster.sh [duration, default 10s] [connections, default 64].
# Needs: wrk, curl, python3, nginx.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DUR=${1:-10s}
CONNS=${2:-64}
THREADS=2
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

WORK=$(mktemp -d)
PIDS=()
NGINX_PID=
stop_all() {
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=(); NGINX_PID=
}
trap 'stop_all; rm -rf "$WORK"' EXIT
copy_binary "$WORK/douyin_club"

# node ROLE: starts a node on the shared data dir; sets PORT to its api port.
node() {
  local api; api=$(free_port)
  RUST_LOG=warn "$WORK/douyin_club" --role "$1" --data-dir "$WORK/data" \
    --api-addr "127.0.0.1:$api" --stream-addr "127.0.0.1:$STREAM_PORT" \
    --scheduler-addr "127.0.0.1:$(free_port)" --web-addr "127.0.0.1:$(free_port)" \
    --scheduler-url "http://127.0.0.1:$SCHED_PORT" >>"$WORK/nodes.log" 2>&1 &
  PIDS+=($!)
  wait_healthy "http://127.0.0.1:$api"
  PORT=$api
}

# balance PORT...: nginx on a free port in front of the api nodes on PORTs; sets LB.
balance() {
  local lb; lb=$(free_port)
  mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
  {
    echo "worker_processes 1; pid nginx.pid; error_log logs/error.log warn; daemon off;"
    [ "$(id -u)" = 0 ] && echo "user root root;"
    echo "events { worker_connections 4096; }"
    echo "http { access_log off; client_body_temp_path tmp; proxy_temp_path tmp;"
    echo "  upstream api { $(for p in "$@"; do printf 'server 127.0.0.1:%s; ' "$p"; done) keepalive 64; }"
    echo "  server { listen 127.0.0.1:$lb; location / { proxy_pass http://api;"
    echo "    proxy_http_version 1.1; proxy_set_header Connection \"\"; } } }"
  } >"$WORK/nginx/nginx.conf"
  "$NGINX" -p "$WORK/nginx" -c nginx.conf &
  NGINX_PID=$!
  for _ in $(seq 1 200); do curl -fs -o /dev/null "http://127.0.0.1:$lb/healthz" && break; sleep 0.02; done
  LB="http://127.0.0.1:$lb"
}

ticks() { local t=0; for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }
HZ=$(getconf CLK_TCK)

# measure LABEL URL [wrk args]: wrk through the balancer; prints the wrk line and CPU ms/request.
measure() {
  local label=$1 url=$2; shift 2
  local before after line rps
  before=$(ticks "${PIDS[@]}" "$NGINX_PID")
  line=$(wrk_summary "$label" -t$THREADS -c"$CONNS" -d"$DUR" "$@" "$url")
  after=$(ticks "${PIDS[@]}" "$NGINX_PID")
  rps=$(echo "$line" | awk '{for(i=1;i<=NF;i++) if ($i=="req/s") print $(i-1)}')
  python3 -c "
d = float('$DUR'.rstrip('s'))
cpu_ms = ($after - $before) / $HZ * 1000
print(f'$line  cpu {cpu_ms / ($rps * d) * 1000:.1f} us/req')"
}

STREAM_PORT=$(free_port); SCHED_PORT=$(free_port)
# The first node runs every service (the stream service for the fixture's uploads, the
# scheduler); the second is an api node only.
node all; FIRST=$PORT
API="http://127.0.0.1:$FIRST"
SID=$(curl -fsS "$API/user" -H 'content-type: application/json' \
  -d '{"user_name":"bench","pwd":"password1"}' | json_field session_id)
for i in $(seq 1 20); do
  VID=$(curl -fsS "$API/user/bench/videos" -H "X-Session-Id: $SID" \
    -H 'content-type: application/json' -d "{\"name\":\"clip $i\"}" | json_field id)
  { printf '\0\0\0\030ftypisom\0\0\2\0isomiso2'; head -c 20000 /dev/urandom; } |
    curl -fsS -o /dev/null "http://127.0.0.1:$STREAM_PORT/upload/$VID" -H "X-Session-Id: $SID" \
      -H 'content-type: video/mp4' --data-binary @-
done
cat >"$WORK/comment.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"content":"a benchmark comment"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Session-Id"] = "$SID"
LUA

echo "api behind nginx, SQLite: wrk -t$THREADS -c$CONNS -d$DUR, $(nproc) cores, $(date -u +%F)"
balance "$FIRST"
measure "1 api node: feed" "$LB/videos?limit=20"
measure "1 api node: comment" "$LB/videos/$VID/comments" -s "$WORK/comment.lua"
kill "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null || true
node api; SECOND=$PORT
balance "$FIRST" "$SECOND"
measure "2 api nodes: feed" "$LB/videos?limit=20"
measure "2 api nodes: comment" "$LB/videos/$VID/comments" -s "$WORK/comment.lua"
