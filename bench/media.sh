#!/usr/bin/env bash
# Media-job benchmark: what the probe_video job (ffprobe + an ffmpeg poster, run by the
# in-process scheduler at SCHED_IDLE, 2 at once) costs, on one `--role all` process, loopback.
#
#  1. Time to poster: three 1080p H.264 + AAC clips (2 s, 60 s, 10 min; testsrc2 + sine, made
#     once with ffmpeg and cached) are each uploaded REPEAT times (a new video each time); the
#     time runs from the upload's 201 to the moment the api shows a poster_url AND that URL
#     answers 200 on the stream service (polled every 20 ms, keep-alive). Median/min/max per
#     clip, the poster's bytes and pixel size (ffprobe), and what the probe recorded.
#  2. api p99 while probes run, ROUNDS times: `wrk -t1 -c8 --latency GET /videos?limit=20`
#     with nothing running (baseline, after `sync; sleep 3`), then PROBES uploads of the 60 s
#     clip (curl, all in parallel) and the same wrk at once, while a sampler reads the
#     scheduler's job listing every 200 ms (probes left and running: were they there for the
#     whole window?) and the CPU time of the server's children (ffprobe, ffmpeg: how much of
#     the machine did they get in the window?), until every probe is done. Both windows serve
#     a full page (20 ready videos are there before the first baseline).
# Prints a markdown table and writes it, with the command, date and machine, to RESULTS.
#
# Usage: bench/media.sh
#   BIN=path/to/douyin_club   use that binary instead of `cargo build --release`.
#   MEDIA_CACHE=dir           where the clips are kept (default /tmp/douyin-media-clips).
#   REPEAT=3 PROBES=20 WRK_SECS=10 ROUNDS=3   (ROUNDS: of part 2, baseline and load each)
#   RESULTS=path              the markdown written (default bench/results/media.md).
#   LOGS=dir                  keep the raw outputs (wrk, job samples, server log) there.
# Needs ffmpeg, ffprobe (with libx264, aac), wrk, curl, python3 (and cargo unless BIN= is given).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh disable=SC1091  # followed with shellcheck -x
source "$(dirname "$0")/lib.sh"
CACHE=${MEDIA_CACHE:-/tmp/douyin-media-clips}
REPEAT=${REPEAT:-3}
PROBES=${PROBES:-20}
WRK_SECS=${WRK_SECS:-10}
ROUNDS=${ROUNDS:-3}
RESULTS=${RESULTS:-$ROOT/bench/results/media.md}
CLIPS="short:2 minute:60 ten:600"

missing=
for tool in ffmpeg ffprobe wrk curl python3; do
  command -v "$tool" >/dev/null || missing="$missing $tool"
done
[ -n "$BIN_GIVEN" ] || command -v cargo >/dev/null || missing="$missing cargo(or BIN=)"
if [ -n "$missing" ]; then
  echo "media.sh: missing:$missing" >&2
  exit 1
fi

WORK=$(mktemp -d)
PID=; MON_PID=
cleanup() {
  for p in "$MON_PID" "$PID"; do if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
now() { date +%s.%N; }
quiet_note() { echo "load average $(cut -d' ' -f1-3 /proc/loadavg), $(pgrep -c rustc || true) rustc running"; }
at_start=$(quiet_note)
echo "at start: $at_start" >&2
copy_binary "$WORK/douyin_club"

# --- the clips, made once ----------------------------------------------------------------------
mkdir -p "$CACHE"
for c in $CLIPS; do
  name=${c%%:*}; secs=${c##*:}; out="$CACHE/$name.mp4"
  [ -s "$out" ] && continue
  echo "making $out ($secs s of 1080p)..." >&2
  ffmpeg -v error -nostdin -y -f lavfi -i "testsrc2=size=1920x1080:rate=25:duration=$secs" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=$secs" \
    -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -b:a 128k \
    -movflags +faststart -shortest -f mp4 "$out.part"
  mv "$out.part" "$out"
done

# --- the server ----------------------------------------------------------------------------------
API_PORT=$(free_port); STREAM_PORT=$(free_port); SCHED_PORT=$(free_port); WEB_PORT=$(free_port)
API=127.0.0.1:$API_PORT; STREAM=127.0.0.1:$STREAM_PORT; SCHED=127.0.0.1:$SCHED_PORT
DATA=$WORK/data
# The limiter would refuse the 20 ms polls and the parallel uploads of one user: raised.
RUST_LOG=warn "$WORK/douyin_club" --data-dir "$DATA" --api-addr "$API" --stream-addr "$STREAM" \
  --scheduler-addr "$SCHED" --web-addr "127.0.0.1:$WEB_PORT" \
  --stream-rate 100000 --stream-burst 100000 --max-streams-per-client 256 \
  --max-upload-bytes $((2 << 30)) >"$WORK/server.log" 2>&1 &
PID=$!
wait_healthy "http://$API"; wait_healthy "http://$STREAM"
TOKEN=$(cat "$DATA/internal.token")
SESSION=$(curl -fsS -H 'Content-Type: application/json' -d '{"user_name":"bench","pwd":"password1"}' \
  "http://$API/user" | json_field session_id)
new_video() {
  curl -fsS -H "X-Session-Id: $SESSION" -H 'Content-Type: application/json' \
    -d "{\"name\":\"$1\"}" "http://$API/user/bench/videos" | json_field id
}

# The helper: `poster` uploads a file and times 201 -> poster served; `watch` samples the job
# listing until no probe_video job is left unfinished (failed ones are kept, and counted), once
# the file named by its last argument (if any) exists.
cat >"$WORK/media.py" <<'PY'
import http.client, json, os, sys, time

def conn(addr):
    host, port = addr.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=30, blocksize=1 << 20)

class Client:
    def __init__(self, addr): self.addr, self.c = addr, conn(addr)
    def get(self, path, headers={}):
        for _ in range(2):
            try:
                self.c.request("GET", path, headers=headers)
                r = self.c.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                self.c.close(); self.c = conn(self.addr)
        raise SystemExit(f"GET {path} failed twice")

def poster(api, stream, session, vid, path, out, limit_s):
    c = conn(stream)
    with open(path, "rb") as f:
        c.request("POST", f"/upload/{vid}", body=f, headers={
            "Content-Type": "video/mp4", "X-Session-Id": session,
            "Content-Length": str(os.path.getsize(path))})
        r = c.getresponse(); body = r.read()
    t0 = time.monotonic()
    if r.status != 201:
        raise SystemExit(f"upload {vid}: {r.status} {body[:200]!r}")
    a, s = Client(api), Client(stream)
    polls = 0
    while True:
        polls += 1
        st, b = a.get(f"/user/bench/videos/{vid}")
        v = json.loads(b) if st == 200 else {}
        if v.get("poster_url"):
            st, img = s.get(v["poster_url"])
            if st == 200:
                t1 = time.monotonic()
                break
        if time.monotonic() - t0 > limit_s:
            raise SystemExit(f"no poster for {vid} after {limit_s} s: {v}")
        time.sleep(0.02)
    open(out, "wb").write(img)
    keys = ("duration_ms", "width", "height", "video_codec", "audio_codec", "poster_url")
    print(json.dumps({"ms": round((t1 - t0) * 1000, 1), "bytes": len(img), "polls": polls,
                      **{k: v.get(k) for k in keys}}))

def child_ticks(pid):
    """CPU ticks (user + system) of the server's children: the reaped ones (cutime, cstime)
    and the live ones (ffprobe, ffmpeg)."""
    def stat(p):
        with open(f"/proc/{p}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    s = stat(pid)
    total = int(s[13]) + int(s[14])
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children = f.read().split()
        except OSError:
            continue  # a thread that ended in between (tokio's idle blocking threads do)
        for child in children:
            try:
                c = stat(child)
                total += int(c[11]) + int(c[12])
            except OSError:
                pass  # reaped in between: in cutime from now on
    return total

def watch(sched, token, out, limit_s, server_pid, ready_flag=None):
    c = Client(sched)
    h = {"Authorization": f"Bearer {token}"}
    start = time.time()
    with open(out, "w") as f:
        while True:
            settled = ready_flag is None or os.path.exists(ready_flag)
            st, b = c.get("/jobs?kind=probe_video", h)
            if st != 200:
                raise SystemExit(f"GET /jobs: {st} {b[:200]!r}")
            jobs = json.loads(b)["jobs"]
            failed = sum(j["failed"] for j in jobs)
            running = sum(j["running"] for j in jobs)
            errors = sorted({j["last_error"] for j in jobs if j["last_error"]})
            f.write(json.dumps({"t": time.time(), "settled": settled, "left": len(jobs) - failed,
                                "running": running, "failed": failed, "errors": errors,
                                "child_ticks": child_ticks(server_pid)}) + "\n")
            f.flush()
            # Jobs are queued as the uploads end: an empty queue means done once they all have.
            if (settled and len(jobs) == failed) or time.time() - start > limit_s:
                return
            time.sleep(0.2)

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "poster":
        poster(*args[:6], float(args[6]))
    else:
        watch(args[0], args[1], args[2], float(args[3]), int(args[4]), *args[5:])
PY
helper() { python3 "$WORK/media.py" "$@"; }

# --- 1. time to poster ---------------------------------------------------------------------------
: >"$WORK/posters.jsonl"
for c in $CLIPS; do
  name=${c%%:*}
  for r in $(seq 1 "$REPEAT"); do
    sync; sleep 1
    vid=$(new_video "$name $r")
    line=$(helper poster "$API" "$STREAM" "$SESSION" "$vid" "$CACHE/$name.mp4" \
      "$WORK/poster-$name.img" 600)
    px=$(ffprobe -v error -show_entries stream=width,height -of csv=p=0:s=x "$WORK/poster-$name.img")
    echo "$name $r: $line ${px}px" >&2
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["clip"]=sys.argv[2]; d["px"]=sys.argv[3]; print(json.dumps(d))' \
      "$line" "$name" "$px" >>"$WORK/posters.jsonl"
  done
done

# --- 2. api p99 while probes run -----------------------------------------------------------------
# Fill the feed's first page with probed videos, so both windows serve 20 items.
ready=$(curl -fsS "http://$API/videos?limit=20" |
  python3 -c 'import json,sys; print(len(json.load(sys.stdin)["videos"]))')
for i in $(seq $((ready + 1)) 20); do
  vid=$(new_video "fill $i")
  curl -fsS -o /dev/null -X POST --data-binary "@$CACHE/short.mp4" -H "X-Session-Id: $SESSION" \
    -H 'Content-Type: video/mp4' "http://$STREAM/upload/$vid"
done
helper watch "$SCHED" "$TOKEN" "$WORK/fill.jsonl" 120 "$PID"
feed() { wrk -t1 -c8 -d"${WRK_SECS}s" --latency "http://$API/videos?limit=20"; }

# One round: the baseline window, then PROBES parallel uploads and the same window at once; the
# sampler runs until the probes are all done. Files suffixed with the round's number.
load_round() {
  local r=$1 vid u0 u1 w0 w1 ups=() vids=()
  for i in $(seq 1 "$PROBES"); do vids+=("$(new_video "load $r.$i")"); done
  sync; sleep 3
  feed >"$WORK/base.$r.txt"
  u0=$(now)
  helper watch "$SCHED" "$TOKEN" "$WORK/watch.$r.jsonl" 900 "$PID" "$WORK/uploaded.$r" &
  MON_PID=$!
  for vid in "${vids[@]}"; do
    curl -sS -o /dev/null -w '%{http_code}\n' -X POST -T "$CACHE/minute.mp4" \
      -H "X-Session-Id: $SESSION" -H 'Content-Type: video/mp4' "http://$STREAM/upload/$vid" \
      >>"$WORK/codes.$r" &
    ups+=($!)
  done
  wait "${ups[@]}"
  u1=$(now)
  touch "$WORK/uploaded.$r"
  w0=$(now)
  feed >"$WORK/load.$r.txt"
  w1=$(now)
  wait "$MON_PID"; MON_PID=
  # Every loaded video probed, with a poster?
  local probed=0
  for vid in "${vids[@]}"; do
    curl -fsS "http://$API/user/bench/videos/$vid" |
      python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("poster_url") else 1)' &&
      probed=$((probed + 1))
  done
  python3 - "$WORK" "$r" "$u0" "$u1" "$w0" "$w1" "$(getconf CLK_TCK)" "$probed" \
    >"$WORK/round.$r.json" <<'PY'
import json, re, sys
work, r = sys.argv[1], sys.argv[2]
u0, u1, w0, w1 = map(float, sys.argv[3:7])
hz, probed = int(sys.argv[7]), int(sys.argv[8])
def wrk(name):
    out = open(f"{work}/{name}.{r}.txt").read()
    v, u = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)", out, re.M).groups()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return float(v) * {"us": 1e-3, "ms": 1, "s": 1e3}[u], rps, int(m.group(1)) if m else 0
rows = [json.loads(l) for l in open(f"{work}/watch.{r}.jsonl")]
codes = open(f"{work}/codes.{r}").read().split()
done = next((x["t"] for x in rows if x["settled"] and x["left"] == 0), None)
inwin = [x for x in rows if w0 <= x["t"] <= w1 and x["settled"]] or rows[-1:]
first, last = inwin[0], inwin[-1]
(bp, brps, bbad), (lp, lrps, lbad) = wrk("base"), wrk("load")
print(json.dumps({
    "base_p99": bp, "base_rps": brps, "load_p99": lp, "load_rps": lrps, "non2xx": bbad + lbad,
    "uploads_s": u1 - u0, "not_201": sum(c != "201" for c in codes),
    # From the first upload's start (and from the last 201) to no probe left.
    "probes_s": (done - u0) if done else None, "after_last_201_s": (done - u1) if done else None,
    "done_after_window_s": (done - w1) if done else None,
    # The share of the wrk window with probes left.
    "cover": 100 if done is None else round(max(0, min(1, (done - w0) / (w1 - w0))) * 100),
    "min_left": min(x["left"] for x in inwin), "min_running": min(x["running"] for x in inwin),
    "finished_in_window": first["left"] - last["left"],
    # CPU that the server's children (ffprobe, ffmpeg) had in the window, in cores.
    "probe_cores": (last["child_ticks"] - first["child_ticks"]) / hz
                   / max(last["t"] - first["t"], 1e-9),
    "probed": probed, "failed": rows[-1]["failed"],
    "errors": sorted({e for x in rows for e in x["errors"]})}))
PY
  echo "round $r: $(cat "$WORK/round.$r.json")" >&2
}
for r in $(seq 1 "$ROUNDS"); do load_round "$r"; done

# --- figures -------------------------------------------------------------------------------------
at_end=$(quiet_note)
table=$(python3 - "$WORK" "$CACHE" "$ROUNDS" "$PROBES" "$WRK_SECS" <<'PY'
import json, os, statistics, sys
work, cache, rounds, n, wsecs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
rows = [json.loads(l) for l in open(f"{work}/posters.jsonl")]
print("| clip | file | time to poster, median (min–max) | poster | recorded by the probe |")
print("|---|---:|---:|---|---|")
for clip, label in (("short", "2 s"), ("minute", "60 s"), ("ten", "10 min")):
    rs = [r for r in rows if r["clip"] == clip]
    ms = [r["ms"] for r in rs]
    last = rs[-1]
    size = os.path.getsize(os.path.join(cache, clip + ".mp4")) / 1e6
    print(f"| {label} 1080p | {size:.1f} MB | {statistics.median(ms):.0f} ms "
          f"({min(ms):.0f}–{max(ms):.0f}; n={len(ms)}) | {last['bytes']:,} B, {last['px']} px "
          f"| {last['duration_ms']} ms, {last['width']}x{last['height']}, "
          f"{last['video_codec']}+{last['audio_codec']} |")
rs = [json.load(open(f"{work}/round.{r}.json")) for r in range(1, rounds + 1)]
print()
print(f"api `GET /videos?limit=20`, `wrk -t1 -c8 -d{wsecs}s`: baseline with nothing running, then "
      f"while {n} probes of the 60 s clip run (started at once after their {n} parallel uploads):")
print()
print("| round | baseline p99 | req/s | under probes p99 | req/s | ratio (target ≤ 2×) "
      "| probes left / running in the window | probes done in the window | ffmpeg CPU in the window "
      f"| {n} uploads | {n} probes done after |")
print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
fmt = lambda v, f: "—" if v is None else f.format(v)
for i, r in enumerate(rs, 1):
    print(f"| {i} | {r['base_p99']:.2f} ms | {r['base_rps']:,.0f} | {r['load_p99']:.2f} ms "
          f"| {r['load_rps']:,.0f} | {r['load_p99'] / r['base_p99']:.2f}× "
          f"| ≥ {r['min_left']} / ≥ {r['min_running']} ({r['cover']}% covered) "
          f"| {r['finished_in_window']} | {r['probe_cores']:.2f} cores | {r['uploads_s']:.1f} s "
          f"| {fmt(r['probes_s'], '{:.1f} s')} ({fmt(r['after_last_201_s'], '{:.1f}')} s after "
          f"the last 201) |")
ratios = [r["load_p99"] / r["base_p99"] for r in rs]
print(f"| median | {statistics.median(r['base_p99'] for r in rs):.2f} ms | "
      f"| {statistics.median(r['load_p99'] for r in rs):.2f} ms | "
      f"| **{statistics.median(ratios):.2f}×** | | | | | "
      f"{statistics.median(r['probes_s'] or float('nan') for r in rs):.1f} s |")
print()
bad = sum(r["not_201"] for r in rs); non2xx = sum(r["non2xx"] for r in rs)
probed = sum(r["probed"] for r in rs); failed = sum(r["failed"] for r in rs)
print(f"Afterwards {probed}/{int(n) * rounds} loaded videos have a poster; {failed} probe jobs "
      f"failed; {bad} uploads not 201; {non2xx} wrk responses not 2xx.")
short = [r for r in rs if r["cover"] < 100]
if short:
    print(f"**The probes finished before the wrk window closed in {len(short)} round(s).**")
PY
)
echo "$table"
errors=$(cat "$WORK"/round.*.json | python3 -c 'import json,sys; print("; ".join(sorted({e for l in sys.stdin for e in json.loads(l)["errors"]})))')
if [ -n "$errors" ]; then echo "probe errors: $errors" >&2; fi
if [ -s "$WORK/server.log" ]; then echo "server log (warnings):" >&2; tail -20 "$WORK/server.log" >&2; fi

{
  echo "# Media jobs benchmark"
  echo
  echo "Command (from the repository root):"
  echo
  echo "    ${BIN_GIVEN:+BIN=$BIN_GIVEN }bench/media.sh   # REPEAT=$REPEAT PROBES=$PROBES WRK_SECS=$WRK_SECS ROUNDS=$ROUNDS"
  echo
  echo "Run on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores (a noisy VM), commit" \
    "$(cd "$ROOT" && git rev-parse --short HEAD), $(ffmpeg -version | head -1 | cut -d' ' -f1-3)."
  echo "Quiet? at start: $at_start; at the end: $at_end."
  echo
  echo "Clips: testsrc2 + 440 Hz sine, 1920x1080 25 fps, libx264 veryfast (x264's default GOP of"
  echo "250 frames, a keyframe every 10 s) + AAC 128k, moov at the front. Time to poster: the"
  echo "upload's 201 to the api showing poster_url and the stream serving it (200), polled every"
  echo "20 ms; the poster's pixel size from ffprobe."
  echo
  echo "$table"
  if [ -n "$errors" ]; then echo; echo "Probe errors seen: \`$errors\`"; fi
  if [ -s "$WORK/server.log" ]; then
    echo; echo "The server's log (RUST_LOG=warn) during the run:"; echo
    head -n 50 "$WORK/server.log" | sed 's/^/    /'
  fi
} >"$RESULTS"
echo "written: $RESULTS" >&2
if [ -n "${LOGS:-}" ]; then
  mkdir -p "$LOGS"
  cp "$WORK"/posters.jsonl "$WORK"/watch.*.jsonl "$WORK"/round.*.json "$WORK"/base.*.txt \
    "$WORK"/load.*.txt "$WORK"/server.log "$LOGS"/
fi
