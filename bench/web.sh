#!/usr/bin/env bash
# Web service benchmark: wrk against the feed page `/` and a watch page, then the proxy's
# Range throughput as a ratio to the stream service hit directly, in the same run: the web
# origin of the all-in-one process (which plays with the stream's own front), and a
# `--role web` process in front of it (which relays over loopback).
# Usage: bench/web.sh [seconds per run, default 10]. Needs wrk, curl, ffmpeg.
# Writes bench/results/web.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10}"
CONNS="${CONNS:-32}"
THREADS="${THREADS:-2}"
# Wherever cargo really builds (CARGO_TARGET_DIR, a config file or a wrapper may move it).
TARGET=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

DATA="$(mktemp -d)"
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  # A private copy: a target dir shared with other checkouts may be rebuilt under us.
  cp "$TARGET/release/douyin_club" "$DATA/douyin_club"
  BIN="$DATA/douyin_club"
fi
# Free ports, so that the run never talks to another node that happens to be up.
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
WEB=127.0.0.1:$(port)
API=127.0.0.1:$(port)
STREAM=127.0.0.1:$(port)
SCHED=127.0.0.1:$(port)
# The limiter is opened wide: this measures the proxy, not the per-client token bucket.
"$BIN" --data-dir "$DATA" --web-addr "$WEB" --api-addr "$API" --stream-addr "$STREAM" \
  --scheduler-addr "$SCHED" --stream-rate 1000000 --stream-burst 1000000 \
  --max-streams 4096 --max-streams-per-client 4096 >"$DATA/log" 2>&1 &
PID=$!
# A web node of its own, reaching the api and stream of the process above by their URLs.
WEB2=127.0.0.1:$(port)
"$BIN" --role web --data-dir "$DATA/web2" --web-addr "$WEB2" --api-url "http://$API" \
  --stream-url "http://$STREAM" >"$DATA/log2" 2>&1 &
PID2=$!
trap 'kill $PID $PID2 2>/dev/null; wait $PID $PID2 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do curl -fs "http://$WEB/healthz" >/dev/null && break; sleep 0.1; done
for _ in $(seq 100); do curl -fs "http://$WEB2/healthz" >/dev/null && break; sleep 0.1; done
kill -0 $PID || { cat "$DATA/log"; exit 1; }
kill -0 $PID2 || { cat "$DATA/log2"; exit 1; }

# A user, a dozen ready videos for the feed, one ~6 MB clip for Range reads.
S=$(curl -fs "http://$API/user" -H 'Content-Type: application/json' \
  -d '{"user_name":"bench","pwd":"password1"}' | sed -E 's/.*"session_id":"([^"]+)".*/\1/')
# Noise does not compress, so the clip is several MiB and each Range read a full MiB.
ffmpeg -loglevel error -y -f lavfi -i "nullsrc=s=640x360:d=12,geq=random(1)*255:128:128" \
  -c:v libvpx -b:v 4M -minrate 4M -maxrate 4M "$DATA/clip.webm"
VID=""
for i in $(seq 12); do
  VID=$(curl -fs "http://$API/user/bench/videos" -H "X-Session-Id: $S" \
    -H 'Content-Type: application/json' -d "{\"name\":\"Bench clip $i\"}" \
    | sed -E 's/.*"id":"([^"]+)".*/\1/')
  curl -fs "http://$STREAM/upload/$VID" -H "X-Session-Id: $S" -H 'Content-Type: video/webm' \
    --data-binary "@$DATA/clip.webm" >/dev/null
done
SIZE=$(stat -c %s "$DATA/clip.webm")

# Prints requests/s, bytes/s and non-2xx count of a run, from wrk's own summary.
cat >"$DATA/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format("RESULT %.1f %.1f %d %.2f\n", summary.requests / secs,
    summary.bytes / secs, summary.errors.status + summary.errors.connect
    + summary.errors.read + summary.errors.timeout, latency:percentile(99) / 1000))
end
LUA
run() { # name url [header]
  local out
  if [ -n "${3:-}" ]; then
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" -s "$DATA/report.lua" -H "$3" "$2")
  else
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" -s "$DATA/report.lua" "$2")
  fi
  echo "$out" | grep RESULT | sed "s/^RESULT/$1/"
}
RANGE="Range: bytes=0-1048575"
FEED=$(run feed "http://$WEB/")
WATCH=$(run watch "http://$WEB/watch/$VID?by=bench")
DIRECT=$(run direct "http://$STREAM/videos/$VID" "$RANGE")
PROXY=$(run proxy "http://$WEB/videos/$VID" "$RANGE")
RELAY=$(run relay "http://$WEB2/videos/$VID" "$RANGE")
echo "$FEED"; echo "$WATCH"; echo "$DIRECT"; echo "$PROXY"; echo "$RELAY"

field() { echo "$1" | awk "{print \$$2}"; }
mbs() { awk "BEGIN{printf \"%.1f\", $1/1048576}"; }
RATIO=$(awk "BEGIN{printf \"%.2f\", $(field "$PROXY" 3)/$(field "$DIRECT" 3)}")
RELAY_RATIO=$(awk "BEGIN{printf \"%.2f\", $(field "$RELAY" 3)/$(field "$DIRECT" 3)}")
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
cat >bench/results/web.md <<MD
# Web service benchmark

\`bench/web.sh $DUR\` on $(nproc) cores ($CPU), $(date -u +%Y-%m-%d); wrk -t$THREADS -c$CONNS,
${DUR}s per run, release build, all services in one process, limiter opened wide.

| target | requests/s | throughput | errors/non-2xx | p99 latency |
|---|---|---|---|---|
| \`GET /\` (feed page, 12 cards) | $(field "$FEED" 2) | $(mbs "$(field "$FEED" 3)") MiB/s | $(field "$FEED" 4) | $(field "$FEED" 5) ms |
| \`GET /watch/:vid\` | $(field "$WATCH" 2) | $(mbs "$(field "$WATCH" 3)") MiB/s | $(field "$WATCH" 4) | $(field "$WATCH" 5) ms |
| stream direct, \`Range: bytes=0-1048575\` | $(field "$DIRECT" 2) | $(mbs "$(field "$DIRECT" 3)") MiB/s | $(field "$DIRECT" 4) | $(field "$DIRECT" 5) ms |
| web origin, same process, same Range | $(field "$PROXY" 2) | $(mbs "$(field "$PROXY" 3)") MiB/s | $(field "$PROXY" 4) | $(field "$PROXY" 5) ms |
| \`--role web\` node relaying, same Range | $(field "$RELAY" 2) | $(mbs "$(field "$RELAY" 3)") MiB/s | $(field "$RELAY" 4) | $(field "$RELAY" 5) ms |

**Range throughput / direct: web origin in the same process $RATIO (goal ≥ 0.95), a web node of
its own $RELAY_RATIO (goal ≥ 0.7).** Clip: $SIZE bytes WebM.
MD
cat bench/results/web.md
