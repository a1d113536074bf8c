#!/usr/bin/env bash
# What a session check costs (issue 10): the same authenticated request — GET /user/:name,
# whose work is resolving the session and reading the user — on a node whose sessions are
# cached in the process, and on a node with --redis-url, where every request reads Redis.
# The difference in p50/p99 is what Redis adds per request. One run, one redis-server started
# here on a free loopback port, wrk at 16 and 64 connections.
#
# Usage: bench/sessions.sh [duration, default 10s]. Needs wrk, curl, python3, redis-server.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DUR=${1:-10s}
THREADS=2

WORK=$(mktemp -d)
PID=; REDIS_PID=
stop_node() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true; PID=; }
cleanup() {
  stop_node
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
copy_binary "$WORK/douyin_club"

REDIS_PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --dir "$WORK" > "$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 200); do
  [ "$(redis-cli -p "$REDIS_PORT" PING 2>/dev/null)" = PONG ] && break
  sleep 0.02
done

# start_node DATA-DIR [FLAGS...]: a node on fresh ports; sets API.
start_node() {
  local data=$1; shift
  local api_port; api_port=$(free_port)
  API="http://127.0.0.1:$api_port"
  RUST_LOG=warn "$WORK/douyin_club" --data-dir "$data" --api-addr "127.0.0.1:$api_port" \
    --stream-addr "127.0.0.1:$(free_port)" --scheduler-addr "127.0.0.1:$(free_port)" \
    --web-addr "127.0.0.1:$(free_port)" "$@" &
  PID=$!
  wait_healthy "$API"
}

# measure LABEL: registers a user on the running node, then wrk on GET /user/:name with its
# session at 16 and 64 connections; prints one wrk_summary line per load.
measure() {
  local sid
  sid=$(curl -fsS -H 'Content-Type: application/json' \
    -d '{"user_name":"bench","pwd":"password1"}' "$API/user" | json_field session_id)
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Session-Id: $sid" "$API/user/bench")" = 200 ]
  for conns in 16 64; do
    wrk_summary "$1, $conns conns" -t$THREADS -c"$conns" -d"$DUR" \
      -H "X-Session-Id: $sid" "$API/user/bench"
  done
}

echo "GET /user/:name with a session: wrk -t$THREADS -d$DUR, $(nproc) cores, $(redis-server --version | awk '{print $3}')"
start_node "$WORK/in-process"
measure "in-process cache"
stop_node
start_node "$WORK/redis" --redis-url "redis://127.0.0.1:$REDIS_PORT/0"
measure "redis"
[ "$(curl -fs "$API/healthz" | json_field redis)" = ok ]
errors=$(curl -fs "$API/metrics" | awk '/^douyin_redis_errors_total/ {print $2}')
stop_node
echo "redis errors during the run: ${errors:-?}"
