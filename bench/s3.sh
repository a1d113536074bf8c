#!/usr/bin/env bash
# Object-store benchmark (issue 9), one run on loopback against a real single-node Garage:
#  (a) a 1 GiB upload through the node (--blob-store s3) against a plain presigned PUT of the
#      same file straight to Garage with curl: MiB/s of both, the ratio, the node's peak RSS;
#  (b) random 1 MiB Range GETs of a ~100 MB object in --playback proxy against the same Range
#      GETs straight to Garage with presigned URLs, wrk at 16 and 64 connections;
#  (c) --playback redirect: the 302's latency at 16 and 64 connections.
# Reference URLs are signed by bench/s3_presign.py (Python stdlib), not by the node.
#
# Usage: bench/s3.sh [upload MiB, default 1024] [wrk duration, default 10s]
# Needs: cargo, garage, curl, wrk, python3.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
MIB=${1:-1024}
DUR=${2:-10s}
BIG_MIB=100
THREADS=2
REGION=garage
BUCKET=douyin-bench

# On the repository's disk, like the data dir of bench/upload.sh; everything goes at the end.
WORK=$(mktemp -d -p "${BENCH_DIR:-$ROOT}" .bench-s3.XXXXXX)
PID=; GARAGE_PID=
stop_node() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true; PID=; }
cleanup() {
  stop_node
  [ -n "$GARAGE_PID" ] && kill "$GARAGE_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
copy_binary "$WORK/douyin_club"
python3 "$ROOT/bench/s3_presign.py" --self-test >/dev/null
now() { date +%s%N; }
hex() { python3 -c "import secrets; print(secrets.token_hex($1))"; }

# --- Garage: single node, as tests/api/garage_support.rs starts it.
S3_PORT=$(free_port); RPC_PORT=$(free_port)
S3="http://127.0.0.1:$S3_PORT"
export S3_REGION=$REGION S3_ACCESS_KEY="GK$(hex 12)" S3_SECRET_KEY=$(hex 32)
cat > "$WORK/garage.toml" <<CONF
metadata_dir = "$WORK/garage/meta"
data_dir = "$WORK/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(hex 32)"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"
CONF
GARAGE_DEFAULT_ACCESS_KEY=$S3_ACCESS_KEY GARAGE_DEFAULT_SECRET_KEY=$S3_SECRET_KEY \
  GARAGE_DEFAULT_BUCKET=$BUCKET RUST_LOG=garage=warn \
  garage -c "$WORK/garage.toml" server --single-node --default-bucket > "$WORK/garage.log" 2>&1 &
GARAGE_PID=$!
presign() { python3 "$ROOT/bench/s3_presign.py" "$1" "$S3" "$BUCKET" "$2" "${3:-3600}"; }
# Ready when the bucket answers a signed request: 404 for an object that is not there.
for _ in $(seq 1 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -I "$(presign HEAD probe 60)")" = 404 ] && break
  sleep 0.05
done

# --- The node, on Garage. The limiter stays on the path but never refuses.
API_PORT=$(free_port); STREAM_PORT=$(free_port); SCHED_PORT=$(free_port); WEB_PORT=$(free_port)
API="http://127.0.0.1:$API_PORT"; STREAM="http://127.0.0.1:$STREAM_PORT"
SIZE=$((MIB * 1048576))
start_node() {
  DOUYIN_S3_SECRET_ACCESS_KEY=$S3_SECRET_KEY RUST_LOG=warn "$WORK/douyin_club" \
    --data-dir "$WORK/data" --api-addr "127.0.0.1:$API_PORT" \
    --stream-addr "127.0.0.1:$STREAM_PORT" --scheduler-addr "127.0.0.1:$SCHED_PORT" \
    --web-addr "127.0.0.1:$WEB_PORT" --stream-rate 1000000 --stream-burst 1000000 \
    --max-streams 1024 --max-streams-per-client 1024 --max-upload-bytes $((SIZE + 1)) \
    --blob-store s3 --s3-endpoint "$S3" --s3-bucket "$BUCKET" --s3-region "$REGION" \
    --s3-access-key-id "$S3_ACCESS_KEY" "$@" &
  PID=$!
  wait_healthy "$API"; wait_healthy "$STREAM"
}
start_node --playback proxy
SESSION=$(curl -fsS -H 'Content-Type: application/json' -d '{"user_name":"bench","pwd":"password1"}' \
  "$API/user" | json_field session_id)
new_video() {
  curl -fsS -H "X-Session-Id: $SESSION" -H 'Content-Type: application/json' \
    -d '{"name":"bench"}' "$API/user/bench/videos" | json_field id
}
# An MP4 signature, then random bytes (incompressible: Garage compresses blocks).
make_file() { { printf '\0\0\0\030ftypisom\0\0\2\0isomiso2'; head -c $(($2 * 1048576 - 24)) /dev/urandom; } > "$1"; }
mibs() { python3 -c "print(round($1/1048576/(($3-$2)/1e9), 1))"; }

# --- (a) 1 GiB upload: straight to Garage, then through the node.
make_file "$WORK/src.mp4" "$MIB"
sleep 1
idle=$(rss_kib "$PID")
t0=$(now)
curl -fsS -o /dev/null -T "$WORK/src.mp4" "$(presign PUT direct/src.mp4)"
t1=$(now)
direct_put=$(mibs "$SIZE" "$t0" "$t1")
VID=$(new_video)
t0=$(now)
curl -fsS -o /dev/null -X POST -T "$WORK/src.mp4" -H "X-Session-Id: $SESSION" \
  -H 'Content-Type: video/mp4' "$STREAM/upload/$VID"
t1=$(now)
through=$(mibs "$SIZE" "$t0" "$t1")
peak=$(awk '/^VmHWM/ {print $2}' "/proc/$PID/status")
cmp <(curl -fsS "$(presign GET "videos/$VID")") "$WORK/src.mp4"
rm -f "$WORK/src.mp4"
curl -fsS -o /dev/null -X DELETE "$(presign DELETE direct/src.mp4)"

# --- (b) Range playback of a ~100 MB object: proxied by the node, and straight from Garage.
make_file "$WORK/big.mp4" "$BIG_MIB"
BIG_SIZE=$(stat -c %s "$WORK/big.mp4")
BIG=$(new_video)
curl -fsS -o /dev/null -X POST -T "$WORK/big.mp4" -H "X-Session-Id: $SESSION" \
  -H 'Content-Type: video/mp4' "$STREAM/upload/$BIG"
cmp <(curl -fsS "$STREAM/videos/$BIG") "$WORK/big.mp4"
SIGNED=$(presign GET "videos/$BIG")
cmp <(curl -fsS "$SIGNED") "$WORK/big.mp4"
rm -f "$WORK/big.mp4"

# wrk's request() builds the path: ours, or the signed path and query (the Host header wrk
# sends is the one signed).
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
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.1f %.2f %.2f %d %d\n",
    summary.bytes / (summary.duration / 1e6) / 1048576,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad,
    summary.requests / (summary.duration / 1e6)))
end
LUA
# range CONNS BASE VPATH: "MiB/s p50 p99 errors req/s".
range() {
  SIZE=$BIG_SIZE VPATH=$3 wrk -t$THREADS -c"$1" -d"$DUR" -s "$WORK/range.lua" "$2" |
    awk '/^RESULT/ {print $2, $3, $4, $5, $6}'
}
declare -A R
for conns in 16 64; do
  R[proxy$conns]=$(range "$conns" "$STREAM" "/videos/$BIG")
  R[direct$conns]=$(range "$conns" "$S3" "${SIGNED#"$S3"}")
done
range_peak=$(awk '/^VmHWM/ {print $2}' "/proc/$PID/status")

# --- (c) redirect: the same node restarted with --playback redirect; each GET is a 302.
stop_node
start_node --playback redirect
code=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "$STREAM/videos/$BIG")
case $code in "302 $S3/$BUCKET/videos/$BIG?"*) ;; *) echo "not a redirect: $code" >&2; exit 1 ;; esac
cmp <(curl -fsSL -r 0-1048575 "$STREAM/videos/$BIG") <(curl -fsS -r 0-1048575 "$SIGNED")
cat > "$WORK/redirect.lua" <<'LUA'
done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.0f %.3f %.3f %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad))
end
LUA
for conns in 16 64; do
  R[redirect$conns]=$(wrk -t$THREADS -c"$conns" -d"$DUR" -s "$WORK/redirect.lua" \
    "$STREAM/videos/$BIG" | awk '/^RESULT/ {print $2, $3, $4, $5}')
done

ratio() { python3 -c "print(round($1/$2, 2))"; }
echo "### (a) 1 GiB upload"
echo
echo "| path | MiB/s |"
echo "|---|---:|"
echo "| presigned PUT straight to Garage (curl -T) | $direct_put |"
echo "| POST /upload through the node (curl -T) | $through |"
echo "| ratio node/direct | $(ratio "$through" "$direct_put") |"
echo
echo "node RSS: idle $((idle / 1024)) MiB, peak during the upload $((peak / 1024)) MiB" \
  "(+$(((peak - idle) / 1024)) MiB)"
echo
echo "### (b) random 1 MiB Range GETs of a $BIG_MIB MiB object"
echo
echo "| conns | path | MiB/s | p50 ms | p99 ms | errors |"
echo "|---:|---|---:|---:|---:|---:|"
for conns in 16 64; do
  for path in proxy direct; do
    read -r mib p50 p99 bad _ <<<"${R[$path$conns]}"
    label="node, --playback proxy"; [ $path = direct ] && label="Garage, presigned"
    echo "| $conns | $label | $mib | $p50 | $p99 | $bad |"
  done
done
echo
echo "| conns | proxy/direct (MiB/s) |"
echo "|---:|---:|"
for conns in 16 64; do
  read -r p _ <<<"${R[proxy$conns]}"; read -r d _ <<<"${R[direct$conns]}"
  echo "| $conns | $(ratio "$p" "$d") |"
done
echo
echo "node peak RSS over (a) and (b): $((range_peak / 1024)) MiB"
echo
echo "### (c) --playback redirect: GET /videos/:id answered 302"
echo
echo "| conns | req/s | p50 ms | p99 ms | errors |"
echo "|---:|---:|---:|---:|---:|"
for conns in 16 64; do
  read -r rps p50 p99 bad <<<"${R[redirect$conns]}"
  echo "| $conns | $rps | $p50 | $p99 | $bad |"
done
echo
echo "upload $MIB MiB; wrk -t$THREADS -d$DUR; garage $(garage --version 2>/dev/null | head -1 | awk '{print $2}'); $(nproc) cores"
