# Shared helpers for the benchmark scripts (sourced, not run).
# Needs: curl, wrk, python3, and a release build of the binary.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# A binary built elsewhere, when the caller names one with BIN=.
BIN_GIVEN=${BIN:-}
BIN="$ROOT/target/release/douyin_club"

build_release() {
  (cd "$ROOT" && cargo build --release --quiet)
}

# copy_binary DEST: the release build (built first, wherever the target dir is), or the binary
# named by BIN=, copied to DEST so that a rebuild during the run cannot swap it.
copy_binary() {
  if [ -n "$BIN_GIVEN" ]; then
    cp "$BIN_GIVEN" "$1"
  else
    build_release
    local target
    target=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    cp "$target/release/douyin_club" "$1"
  fi
}

# free_port: an unused TCP port on loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_healthy URL: polls URL/healthz until 200 (10 s at most).
wait_healthy() {
  for _ in $(seq 1 2000); do
    curl -fs -o /dev/null "$1/healthz" && return 0
    sleep 0.005
  done
  echo "not healthy: $1" >&2
  return 1
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# cpu_ticks PID: user+system clock ticks so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# json_field FIELD: reads JSON on stdin, prints one top-level field.
json_field() { python3 -c "import sys,json; print(json.load(sys.stdin)['$1'])"; }

# wrk_summary LABEL WRK-ARGS...: runs wrk --latency and prints "label req/s p50 p99 non2xx".
wrk_summary() {
  local label=$1; shift
  local out
  out=$(wrk --latency "$@")
  python3 - "$label" <<PY
import re, sys
out = """$out"""
def lat(p):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)" % p, out, re.M)
    if not m: return float("nan")
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
bad = int(m.group(1)) if m else 0
t = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
print(f"{sys.argv[1]:<28} {rps:>10.0f} req/s  p50 {lat(50):7.2f} ms  p99 {lat(99):7.2f} ms  non-2xx {bad}  ({t.group(1)}{t.group(2)}/s)")
PY
}
