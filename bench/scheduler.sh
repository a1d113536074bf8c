#!/usr/bin/env bash
# Deletion benchmark: queue 10,000 deletions of small uploaded files through the real HTTP api,
# then start a scheduler on the same data dir and time how long it takes to drain the queue,
# while wrk measures the api's latency; the same wrk run before the scheduler starts is the
# baseline. Everything is on loopback; the load is bounded (wrk: 1 thread, 8 connections).
#
#   bench/scheduler.sh            # N=10000 by default; N=2000 bench/scheduler.sh for a quick run
#
# Needs: cargo, curl, wrk, bc, sqlite3 (the shell) and python3 (sets up the rows an upload writes).
set -euo pipefail
N=${N:-10000}
KEEP=100                       # ready videos that stay: what the feed under load returns
WRK_SECS=${WRK_SECS:-4}
API=127.0.0.1:28000
SCHED=127.0.0.1:28001
source "$(dirname "$0")/lib.sh"
root=$ROOT
work=$(mktemp -d)
copy_binary "$work/douyin_club"
bin=$work/douyin_club

data=$work/data
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
ports=(--stream-addr 127.0.0.1:28002 --web-addr 127.0.0.1:28003)

wait_up() {
  for _ in $(seq 100); do curl -fs "http://$1/healthz" >/dev/null && return; sleep 0.1; done
  echo "nothing answers on $1:" >&2; cat "$work"/*.log >&2; exit 1
}

# 1. The api alone; its wakes go to a scheduler that is not running yet (the timer's job later).
RUST_LOG=warn "$bin" --role api --data-dir "$data" --api-addr $API --scheduler-addr $SCHED "${ports[@]}" \
  >"$work/api.log" 2>&1 &
pids+=($!)
wait_up $API
session=$(curl -fs -H 'Content-Type: application/json' -d '{"user_name":"bench","pwd":"password1"}' \
  "http://$API/user" | python3 -c 'import json,sys; print(json.load(sys.stdin)["session_id"])')

# 2. N + KEEP ready videos with a 1 KiB file and one comment each, written as an upload would
#    leave them (rows in one transaction, files on disk), for setup speed.
python3 - "$data" "$N" "$KEEP" >"$work/ids" <<'PY'
import os, sqlite3, sys, time, uuid
data, n, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
db = sqlite3.connect(os.path.join(data, "douyin.sqlite3"), timeout=30)
uid = db.execute("SELECT id FROM users WHERE user_name = 'bench'").fetchone()[0]
now = int(time.time() * 1000)
blob = b"\x00\x00\x00\x18ftypmp42" + os.urandom(1008)
with db:
    for i in range(n + keep):
        vid = str(uuid.uuid4())
        cur = db.execute(
            "INSERT INTO videos (id, author_id, name, state, size, content_type, sha256, created_at,"
            " uploaded_at) VALUES (?, ?, ?, 'ready', 1024, 'video/mp4', ?, ?, ?)",
            (vid, uid, f"clip {i}", "0" * 64, now, now))
        db.execute("INSERT INTO comments (id, video_seq, author_id, content, created_at)"
                   " VALUES (?, ?, ?, 'nice', ?)", (str(uuid.uuid4()), cur.lastrowid, uid, now))
        with open(os.path.join(data, "videos", vid), "wb") as f:
            f.write(blob)
        if i < n:
            print(vid)
PY

# 3. Queue the N deletions through the api (8 keep-alive connections).
t0=$(date +%s.%N)
python3 - "$API" "$session" "$work/ids" <<'PY'
import http.client, sys, threading
api, session = sys.argv[1], sys.argv[2]
ids = open(sys.argv[3]).read().split()
def worker(part):
    c = http.client.HTTPConnection(api)
    for vid in part:
        c.request("DELETE", f"/user/bench/videos/{vid}", headers={"X-Session-Id": session})
        r = c.getresponse(); r.read()
        assert r.status == 204, (r.status, vid)
failed = []
def guarded(part):
    try:
        worker(part)
    except Exception as e:
        failed.append(repr(e))
threads = [threading.Thread(target=guarded, args=(ids[i::8],)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
if failed:
    sys.exit(f"deletes failed: {failed[0]}")
PY
t1=$(date +%s.%N)
queued=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from jobs where kind = 'remove_video'\").fetchone()[0])" "$data/douyin.sqlite3")

feed() { wrk -t1 -c8 -d"${WRK_SECS}s" --latency "http://$API/videos?limit=20"; }
p99() { awk '/ 99%/ {print $2}'; }
rps() { awk '/Requests\/sec/ {print $2}'; }

# 4. Baseline: api latency with nothing draining, once the setup's writes have reached the disk
#    (the 10,000 files and deletes just made otherwise flush during the windows below).
sync; sleep 3
feed >"$work/base.txt"

# 5. Start the scheduler on the same data dir and time the drain, with the same load running.
# The sqlite3 shell, not python, polls: it costs a couple of milliseconds of CPU, not thirty.
count() { sqlite3 -cmd '.timeout 5000' "$data/douyin.sqlite3" "select count(*) from jobs where kind = 'remove_video'"; }
feed >"$work/drain.txt" &
wrk_pid=$!
s0=$(date +%s.%N)
RUST_LOG=warn "$bin" --role scheduler --data-dir "$data" --scheduler-addr $SCHED "${ports[@]}" \
  --api-addr 127.0.0.1:28004 >"$work/sched.log" 2>&1 &
pids+=($!)
while [ "$(count)" != 0 ]; do sleep 0.1; done
s1=$(date +%s.%N)
wait $wrk_pid

left_files=$(find "$data/videos" -maxdepth 1 -type f | wc -l)
left=$(python3 -c "import sqlite3,sys; d=sqlite3.connect(sys.argv[1]); print(*[d.execute(q).fetchone()[0] for q in ('select count(*) from videos','select count(*) from comments')])" "$data/douyin.sqlite3")
drain=$(echo "$s1 - $s0" | bc -l)
cat <<OUT
deletions queued through the api: $queued in $(printf %.2f "$(echo "$t1 - $t0" | bc -l)") s
drain (scheduler start -> queue empty): $(printf %.2f "$drain") s = $(printf %.0f "$(echo "$N / $drain" | bc -l)") removals/s
left afterwards: $left_files files, rows and comments: $left (expected $KEEP files, $KEEP $KEEP)
api GET /videos p99, baseline:      $(p99 <"$work/base.txt")  ($(rps <"$work/base.txt") req/s)
api GET /videos p99, while draining: $(p99 <"$work/drain.txt")  ($(rps <"$work/drain.txt") req/s, ${WRK_SECS} s window from scheduler start)
OUT
