#!/usr/bin/env bash
# A flood of sign-ins: wrk with many connections posting correct passwords for 64 accounts from
# many client addresses (X-Forwarded-For, believed from 127.0.0.1), while a second wrk reads the
# feed. Reports the process's peak RSS (VmHWM), the sign-in statuses, and the feed's latency,
# which must stay low because argon2 runs on its own threads, never on the SQLite ones.
#
# Usage: bench/signin.sh [duration, default 20s] [connections, default 256].
# Needs wrk, curl, python3.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DUR=${1:-20s}
CONNS=${2:-256}

DATA=$(mktemp -d)
copy_binary "$DATA/douyin_club"
BIN="$DATA/douyin_club"
trap 'kill $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
API_PORT=$(free_port); STREAM_PORT=$(free_port); SCHED_PORT=$(free_port); WEB_PORT=$(free_port)
API="http://127.0.0.1:$API_PORT"

RUST_LOG=error "$BIN" --data-dir "$DATA/data" --api-addr "127.0.0.1:$API_PORT" \
  --stream-addr "127.0.0.1:$STREAM_PORT" --scheduler-addr "127.0.0.1:$SCHED_PORT" \
  --web-addr "127.0.0.1:$WEB_PORT" &
PID=$!
wait_healthy "$API"
sleep 1
echo "idle RSS: $(rss_kib $PID) KiB"

for i in $(seq 0 63); do
  curl -fs -o /dev/null "$API/user" -H 'content-type: application/json' \
    -d "{\"user_name\":\"u$i\",\"pwd\":\"benchpass\"}"
done
echo "RSS after 64 registrations: $(rss_kib $PID) KiB (peak $(awk '/^VmHWM/ {print $2}' /proc/$PID/status) KiB)"

LUA="$DATA/signin.lua"
cat > "$LUA" <<'LUA'
local threads = {}
setup = function(thread) table.insert(threads, thread) end
c200, c429, c503, cother = 0, 0, 0, 0
request = function()
  local u = math.random(0, 63)
  local ip = "198.18." .. math.random(0, 255) .. "." .. math.random(1, 254)
  return wrk.format("POST", "/user/u" .. u,
    {["Content-Type"] = "application/json", ["X-Forwarded-For"] = ip},
    '{"pwd":"benchpass"}')
end
response = function(status)
  if status == 200 then c200 = c200 + 1
  elseif status == 429 then c429 = c429 + 1
  elseif status == 503 then c503 = c503 + 1
  else cother = cother + 1 end
end
done = function()
  local t = {c200 = 0, c429 = 0, c503 = 0, cother = 0}
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + th:get(k) end
  end
  io.write(string.format("sign-ins: 200 %d, 429 %d, 503 %d, other %d\n",
    t.c200, t.c429, t.c503, t.cother))
end
LUA

wrk -t2 -c"$CONNS" -d"$DUR" --timeout 30s -s "$LUA" --latency "$API" > "$DATA/signin.out" &
FLOOD=$!
sleep 2
wrk_summary "GET /videos during the flood" -t1 -c4 -d5s "$API/videos"
peak=0
while kill -0 $FLOOD 2>/dev/null; do
  r=$(rss_kib $PID); [ "$r" -gt "$peak" ] && peak=$r
  sleep 0.2
done
wait $FLOOD || true
grep -E "Requests/sec|Latency  |sign-ins:" "$DATA/signin.out" || true
echo "peak RSS sampled: $peak KiB; VmHWM: $(awk '/^VmHWM/ {print $2}' /proc/$PID/status) KiB"
sleep 2
echo "RSS after the flood: $(rss_kib $PID) KiB"
