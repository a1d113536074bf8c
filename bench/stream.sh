#!/usr/bin/env bash
# Playback benchmark: our stream service against two references serving the very same files from
# the same data directory at the same URLs (/videos/<id>), in one run, on loopback:
#   - nginx (sendfile on, worker_processes auto);
#   - Go's net/http http.ServeContent over os.Open (Range handled by ServeContent; sendfile too),
#     a ~25-line server written to the temp dir and built with `go build`.
# Loads: random 1 MiB Range requests on a ~100 MB MP4 at 16 and 64 connections, and whole-file
# GETs of a ~2 MB clip at 16 and 64 connections. Three rounds, interleaved: each round runs
# every load against ours, nginx, then Go, for the given duration each.
# Prints one aligned line per run, then per load × server the median of the three rounds of
# MiB/s, p99 and CPU per GiB served (core·seconds of user+system time of the server process:
# our one process, nginx's master + workers, the Go process; divided by GiB sent as wrk counts
# them), the peak RSS over the rounds, and the ratios ours/nginx; last a markdown table for the
# README. 4 loads × 3 servers × 3 rounds: a 10s duration takes about 7 minutes in all.
#
# Usage: bench/stream.sh [duration, default 10s]
#   BIN=path/to/douyin_club  use that binary instead of `cargo build --release`.
#   SERVERS="ours actix nginx go"  also measure "actix": a second process of ours on the same
#                            data dir with --blob-read pread, i.e. playback through actix-web's
#                            body instead of the sendfile front (the step the front took).
#   ROUNDS=1                 fewer rounds, for a quick look.
# Needs go, nginx, wrk, ffmpeg, curl, python3 (and cargo unless BIN= is given).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh disable=SC1091  # followed with shellcheck -x
source "$(dirname "$0")/lib.sh"
DUR=${1:-10s}
THREADS=2
ROUNDS=${ROUNDS:-3}
LOADS="range16 range64 whole16 whole64"
SERVERS=${SERVERS:-ours nginx go}

missing=
for tool in go nginx wrk ffmpeg curl python3; do
  command -v "$tool" >/dev/null || missing="$missing $tool"
done
[ -n "$BIN_GIVEN" ] || command -v cargo >/dev/null || missing="$missing cargo(or BIN=)"
if [ -n "$missing" ]; then
  echo "stream.sh: missing:$missing" >&2
  echo "  Debian: apt-get install golang-go nginx wrk ffmpeg curl python3" >&2
  exit 1
fi
if [ -n "$BIN_GIVEN" ] && [ ! -x "$BIN_GIVEN" ]; then
  echo "stream.sh: BIN=$BIN_GIVEN is not an executable file" >&2
  exit 1
fi

WORK=$(mktemp -d)
# nginx's workers drop root privileges: they must be able to read the data directory.
chmod 755 "$WORK"
PID=; NGINX_PID=; GO_PID=; ACTIX_PID=
cleanup() {
  for p in "$PID" "$NGINX_PID" "$GO_PID" "$ACTIX_PID"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
wait_up() { for _ in $(seq 1 1000); do curl -fs -o /dev/null "$1" && return 0; sleep 0.01; done; return 1; }

echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
copy_binary "$WORK/douyin_club"

echo "building the Go reference (http.ServeContent)..." >&2
mkdir -p "$WORK/goserve"
cat > "$WORK/goserve/main.go" <<'GO'
// Reference file server: GET /videos/<name> from <dir>/<name> with http.ServeContent.
package main

import (
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	dir, addr := os.Args[1], os.Args[2]
	http.HandleFunc("/videos/", func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/videos/")
		if name == "" || strings.Contains(name, "/") || name == ".." {
			http.NotFound(w, r)
			return
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "video/mp4") // as nginx's default_type; no sniffing
		http.ServeContent(w, r, name, st.ModTime(), f)
	})
	log.Fatal(http.ListenAndServe(addr, nil))
}
GO
(cd "$WORK/goserve" && go build -o goserve main.go)

echo "generating clips with ffmpeg..." >&2
ffmpeg -v error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -t 60 -c:v mpeg4 -b:v 13M \
  -f mp4 "$WORK/big.mp4"
ffmpeg -v error -y -f lavfi -i testsrc2=size=640x360:rate=30 -t 4 -c:v mpeg4 -b:v 4M \
  -f mp4 "$WORK/small.mp4"
BIG_SIZE=$(stat -c %s "$WORK/big.mp4"); SMALL_SIZE=$(stat -c %s "$WORK/small.mp4")

API_PORT=$(free_port); STREAM_PORT=$(free_port); SCHED_PORT=$(free_port); WEB_PORT=$(free_port)
NGINX_PORT=$(free_port); GO_PORT=$(free_port)
API="http://127.0.0.1:$API_PORT"; STREAM="http://127.0.0.1:$STREAM_PORT"
NGINX="http://127.0.0.1:$NGINX_PORT"; GOSRV="http://127.0.0.1:$GO_PORT"
# The limiter stays on the path (every request takes a token and a slot, its own and the
# client's: all wrk connections are one client, 127.0.0.1) but never refuses.
RUST_LOG=warn "$WORK/douyin_club" --data-dir "$WORK/data" --api-addr "127.0.0.1:$API_PORT" \
  --stream-addr "127.0.0.1:$STREAM_PORT" --scheduler-addr "127.0.0.1:$SCHED_PORT" \
  --web-addr "127.0.0.1:$WEB_PORT" --stream-rate 1000000 --stream-burst 1000000 \
  --max-streams 1024 --max-streams-per-client 1024 --max-upload-bytes 2147483648 &
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
ACTIX=
case " $SERVERS " in *" actix "*)
  ACTIX_STREAM_PORT=$(free_port); ACTIX="http://127.0.0.1:$ACTIX_STREAM_PORT"
  RUST_LOG=warn "$WORK/douyin_club" --data-dir "$WORK/data" --role stream \
    --stream-addr "127.0.0.1:$ACTIX_STREAM_PORT" --blob-read pread --stream-rate 1000000 \
    --stream-burst 1000000 --max-streams 1024 --max-streams-per-client 1024 &
  ACTIX_PID=$!
  wait_up "$ACTIX/healthz" ;;
esac

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
"$WORK/goserve/goserve" "$WORK/data/videos" "127.0.0.1:$GO_PORT" &
GO_PID=$!
wait_up "$GOSRV/videos/$SMALL" || { echo "the Go server did not come up" >&2; exit 1; }
# All three serve the same bytes, whole and by Range.
for base in "$STREAM" "$NGINX" "$GOSRV" $ACTIX; do
  cmp <(curl -fsS "$base/videos/$BIG") "$WORK/big.mp4"
  cmp <(curl -fsS -H 'Range: bytes=1048576-2097151' "$base/videos/$BIG") \
    <(tail -c +1048577 "$WORK/big.mp4" | head -c 1048576)
done

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
  io.write(string.format("RESULT %.1f %.2f %.2f %d %d\n",
    summary.bytes / (summary.duration / 1e6) / 1048576,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad, summary.bytes))
end
LUA
cat "$WORK/report.lua" >> "$WORK/range.lua"

# pids of a server: ours and Go are one process each; nginx is its master and workers.
pids_of() {
  case $1 in
    ours) echo "$PID" ;;
    actix) echo "$ACTIX_PID" ;;
    go) echo "$GO_PID" ;;
    nginx) echo "$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')" ;;
  esac
}
ticks() { local t=0; for p in $1; do t=$((t + $(cpu_ticks "$p"))); done; echo $t; }
rss() { local r=0; for p in $1; do r=$((r + $(rss_kib "$p"))); done; echo $r; }
HZ=$(getconf CLK_TCK)

# run SERVER LABEL URL CONNS [wrk script]: one wrk run with CPU and peak-RSS sampling; prints
# "MiB/s p50 p99 errors CPU% CPU-s/GiB peak-RSS-MiB".
run() {
  local server=$1 label=$2 url=$3 conns=$4 script=${5:-$WORK/report.lua}
  local pids; pids=$(pids_of "$server")
  local t0; t0=$(ticks "$pids")
  ( while :; do rss "$pids"; sleep 0.2; done ) > "$WORK/rss.$label" &
  local sampler=$!
  local s0; s0=$(date +%s%N)
  local out; out=$(wrk -t$THREADS -c"$conns" -d"$DUR" -s "$script" "$url")
  local s1; s1=$(date +%s%N)
  kill $sampler; wait $sampler 2>/dev/null || true
  local t1; t1=$(ticks "$pids")
  local peak; peak=$(sort -n "$WORK/rss.$label" | tail -1)
  local mib p50 p99 bad bytes
  read -r mib p50 p99 bad bytes < <(echo "$out" | awk '/^RESULT/ {print $2, $3, $4, $5, $6}')
  python3 -c "
cpu = ($t1 - $t0) / $HZ
print('$mib $p50 $p99 $bad', round(100 * cpu / (($s1 - $s0) / 1e9)),
      round(cpu / max($bytes, 1) * 2**30, 3), round($peak / 1024))"
}

echo "big clip: $BIG_SIZE bytes; small clip: $SMALL_SIZE bytes; wrk -t$THREADS -d$DUR; $(nproc) cores;" \
  "$ROUNDS rounds; nginx $(nginx -v 2>&1 | sed 's|.*/||'); $(go version | cut -d' ' -f3)"
printf '%-5s %-8s %-6s %5s %9s %8s %8s %6s %5s %9s %8s\n' \
  round load server conns MiB/s p50_ms p99_ms errors CPU% CPUs/GiB RSS_MiB
: > "$WORK/results"
T_START=$(date +%s)
for round in $(seq 1 $ROUNDS); do
  for load in $LOADS; do
    case $load in
      range16) conns=16; kind=range ;; range64) conns=64; kind=range ;;
      whole16) conns=16; kind=whole ;; whole64) conns=64; kind=whole ;;
    esac
    for server in $SERVERS; do
      case $server in
        ours) base=$STREAM ;; actix) base=$ACTIX ;; nginx) base=$NGINX ;; go) base=$GOSRV ;;
      esac
      if [ "$kind" = range ]; then
        line=$(SIZE=$BIG_SIZE VPATH="/videos/$BIG" run "$server" "$load-$server" "$base" "$conns" \
          "$WORK/range.lua")
      else
        line=$(run "$server" "$load-$server" "$base/videos/$SMALL" "$conns")
      fi
      read -r mib p50 p99 bad cpu cpugib peak <<<"$line"
      echo "$round $load $server $conns $mib $p50 $p99 $bad $cpu $cpugib $peak" >> "$WORK/results"
      printf '%-5s %-8s %-6s %5s %9s %8s %8s %6s %5s %9s %8s\n' \
        "$round" "$load" "$server" "$conns" "$mib" "$p50" "$p99" "$bad" "$cpu" "$cpugib" "$peak"
    done
  done
done
T_END=$(date +%s)

python3 - "$WORK/results" "$LOADS" "$SERVERS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
loads = sys.argv[2].split()
servers = sys.argv[3].split()
d = {}
for rnd, load, server, conns, mib, p50, p99, bad, cpu, cpugib, peak in rows:
    e = d.setdefault((load, server), {"conns": conns, "mib": [], "p99": [], "cpugib": [],
                                      "peak": [], "bad": 0})
    e["mib"].append(float(mib)); e["p99"].append(float(p99))
    e["cpugib"].append(float(cpugib)); e["peak"].append(int(peak)); e["bad"] += int(bad)
med = lambda k, s, f: statistics.median(d[(k, s)][f])
print()
print("median of %d rounds (peak RSS: highest of the rounds; errors: sum)" % len(d[(loads[0], "ours")]["mib"]))
fmt = "%-8s %-6s %9s %8s %9s %8s %6s"
print(fmt % ("load", "server", "MiB/s", "p99_ms", "CPUs/GiB", "RSS_MiB", "errors"))
for k in loads:
    for s in servers:
        e = d[(k, s)]
        print(fmt % (k, s, "%.1f" % med(k, s, "mib"), "%.2f" % med(k, s, "p99"),
                     "%.3f" % med(k, s, "cpugib"), max(e["peak"]), e["bad"]))
print()
print("ours/nginx (medians):")
print("%-8s %7s %7s %10s" % ("load", "MiB/s", "p99", "CPU/GiB"))
for k in loads:
    r = lambda f: med(k, "ours", f) / med(k, "nginx", f)
    print("%-8s %7.2f %7.2f %10.2f" % (k, r("mib"), r("p99"), r("cpugib")))
bad = sorted("%s %s" % k for k, e in d.items() if e["bad"])
if bad:
    print("\nWARNING: errors (non-2xx, connect, read, write, timeout) in: " + ", ".join(bad)
          + "; those figures count refusals and are not comparable")
print()
names = {"range16": "range, 16 conns", "range64": "range, 64 conns",
         "whole16": "whole, 16 conns", "whole64": "whole, 64 conns"}
print("| load | ours MiB/s | nginx | Go | ours/nginx | p99 ours / nginx | CPU per GiB ours / nginx |")
print("|---|---:|---:|---:|---:|---:|---:|")
for k in loads:
    m = {s: med(k, s, "mib") for s in ("ours", "nginx", "go")}
    p = {s: med(k, s, "p99") for s in ("ours", "nginx")}
    c = {s: med(k, s, "cpugib") for s in ("ours", "nginx")}
    print("| %s | %s | %s | %s | **%.2f** | %.1f / %.1f ms (%.2f) | %.2f / %.2f s (%.2f) |" % (
        names.get(k, k), f"{m['ours']:,.0f}", f"{m['nginx']:,.0f}", f"{m['go']:,.0f}",
        m["ours"] / m["nginx"], p["ours"], p["nginx"], p["ours"] / p["nginx"],
        c["ours"], c["nginx"], c["ours"] / c["nginx"]))
PY
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); measuring took $((T_END - T_START)) s"
