#!/usr/bin/env bash
# Scaling of the api behind nginx (issue 10): the feed (GET /videos?limit=20) and authenticated
# comment posts, through one nginx upstream of 1 api node, then of 2 api nodes, first on one
# SQLite data dir, then on PostgreSQL (--database-url), in one run; with the CPU each request
# costs, since on a 2-core machine the cores bound the throughput long before the nodes do.
#
# CPU per request is user + system time over the requests served: of the api nodes and nginx
# ("node+nginx"), and on PostgreSQL also of the server (the postmaster and every child of it:
# backends, WAL writer, checkpointer, autovacuum), read from /proc before and after each run
# ("+postgres"). With SQLite the database's work is inside the node, so SQLite's node+nginx
# compares with PostgreSQL's node+nginx+postgres; the last lines print that ratio.
#
# PostgreSQL is a private server (initdb in the run's temp dir, a free loopback port, stopped
# at exit) with the defaults' durability: fsync = on, synchronous_commit = on, full_page_writes
# = on, as the header line it prints shows. Run as root, the server runs as `postgres`.
# PG_STATS=1 also logs every statement the server runs (log_statement=all) and loads
# pg_stat_statements, and prints after each PostgreSQL run the round trips per request (each
# statement logged is one: rust-postgres sends Bind/Execute/Sync and waits) and the server's
# time per request in each statement; it costs CPU, so the CPU figures of such a run are not
# comparable with a plain run's.
#
# Usage: bench/cluster.sh [duration, default 10s] [connections, default 64].
# Needs: wrk, curl, python3, nginx, PostgreSQL's server (initdb, pg_ctl, psql).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
DUR=${1:-10s}
CONNS=${2:-64}
THREADS=2
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
# initdb may be a symlink on PATH; pg_ctl and psql sit beside the real one.
PG_BIN=$(command -v initdb || printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
PG_BIN=$(dirname "$(realpath "$PG_BIN")")
[ -x "$PG_BIN/pg_ctl" ] || { echo "needs PostgreSQL's initdb and pg_ctl" >&2; exit 1; }
AS_PG=()
[ "$(id -u)" = 0 ] && AS_PG=(runuser -u postgres --)

WORK=$(mktemp -d)
PIDS=()
NGINX_PID=
PG_DIR=
stop_all() {
  if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null || true; fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=(); NGINX_PID=
}
stop_postgres() {
  if [ -n "$PG_DIR" ]; then
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >>"$WORK/postgres.log" 2>&1 ||
      true
  fi
  PG_DIR=
}
trap 'stop_all; stop_postgres; rm -rf "$WORK"' EXIT
copy_binary "$WORK/douyin_club"

# start_postgres: initdb and start a server in $WORK/postgres on a free port; exports
# DOUYIN_DATABASE_URL (the nodes read it from their environment, not their command line).
start_postgres() {
  local port pw pre=()
  port=$(free_port)
  PG_DIR=$WORK/postgres
  mkdir -p "$PG_DIR"
  pw=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  (umask 077 && printf '%s\n' "$pw" >"$PG_DIR/pw")
  if [ "$(id -u)" = 0 ]; then
    chmod 711 "$WORK"  # initdb refuses root: `postgres` must reach its directory
    chown -R postgres: "$PG_DIR"
  fi
  "${AS_PG[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U douyin --pwfile="$PG_DIR/pw" \
    --auth=scram-sha-256 -E UTF8 >>"$WORK/postgres.log" 2>&1
  rm -f "$PG_DIR/pw"
  [ "${PG_STATS:-0}" = 1 ] && pre=(-c shared_preload_libraries=pg_stat_statements
    -c pg_stat_statements.track=all -c log_statement=all -c log_line_prefix=)
  "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR ${pre[*]}" start >>"$WORK/postgres.log" 2>&1
  PG_PM=$(head -n 1 "$PG_DIR/data/postmaster.pid")
  export PGPASSWORD=$pw PGHOST=127.0.0.1 PGPORT=$port PGUSER=douyin
  "$PG_BIN/createdb" douyin
  [ "${PG_STATS:-0}" = 1 ] && psql_q "CREATE EXTENSION pg_stat_statements" >/dev/null
  export DOUYIN_DATABASE_URL="postgres://douyin:$pw@127.0.0.1:$port/douyin"
}
psql_q() { "$PG_BIN/psql" -X -q -At -d douyin -c "$1"; }

# pg_ticks: user+system clock ticks of the PostgreSQL server so far: the postmaster, its live
# children, and (cutime/cstime) the children it has reaped.
pg_ticks() {
  python3 - "$PG_PM" <<'PY'
import os, sys
pm = sys.argv[1]
def fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()  # fields from the 3rd (state) on
t = sum(int(x) for x in fields(pm)[11:15])  # utime stime cutime cstime
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        f = fields(pid)
    except OSError:
        continue  # gone meanwhile
    if f[1] == pm:
        t += int(f[11]) + int(f[12])
print(t)
PY
}

# node ROLE: starts a node on the current data dir (and database); sets PORT to its api port.
node() {
  local api; api=$(free_port)
  RUST_LOG=warn "$WORK/douyin_club" --role "$1" --data-dir "$DATA" \
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
declare -A CPU  # "db shape what" -> CPU us/request, database included

# measure DB SHAPE WHAT URL [wrk args]: wrk through the balancer; prints the wrk line and the
# CPU per request (node+nginx, and on PostgreSQL +postgres).
measure() {
  local db=$1 shape=$2 what=$3 url=$4; shift 4
  local before after pg_before=0 pg_after=0 line rps own all
  local log_at=0
  if [ "$db" = PostgreSQL ] && [ "${PG_STATS:-0}" = 1 ]; then
    psql_q "SELECT pg_stat_statements_reset()" >/dev/null
    log_at=$(stat -c %s "$PG_DIR/postgres.log")
  fi
  [ "$db" = PostgreSQL ] && pg_ticks >"$WORK/pg0"
  before=$(ticks "${PIDS[@]}" "$NGINX_PID")
  [ "$db" = PostgreSQL ] && pg_before=$(<"$WORK/pg0")
  line=$(wrk_summary "$shape: $what" -t$THREADS -c"$CONNS" -d"$DUR" "$@" "$url")
  after=$(ticks "${PIDS[@]}" "$NGINX_PID")
  [ "$db" = PostgreSQL ] && pg_after=$(pg_ticks)
  rps=$(echo "$line" | awk '{for(i=1;i<=NF;i++) if ($i=="req/s") print $(i-1)}')
  read -r own all < <(python3 -c "
n = $rps * float('$DUR'.rstrip('s'))
us = lambda t: t / $HZ * 1e6 / n
print(f'{us($after - $before):.1f} {us($after - $before + $pg_after - $pg_before):.1f}')")
  CPU["$db $shape $what"]=$all
  if [ "$db" = PostgreSQL ]; then
    echo "$line  cpu $own us/req node+nginx, $all us/req +postgres"
  else
    echo "$line  cpu $own us/req"
  fi
  if [ "$db" = PostgreSQL ] && [ "${PG_STATS:-0}" = 1 ]; then
    echo "    round trips per request (log_statement=all):"
    tail -c +$((log_at + 1)) "$PG_DIR/postgres.log" | python3 -c "
import collections, re, sys
n = $rps * float('$DUR'.rstrip('s'))
seen = collections.Counter()
for line in sys.stdin:
    m = re.match(r'LOG:  (?:statement|execute [^:]*): (.*)', line)
    if m:
        seen[' '.join(m.group(1).split())[:90]] += 1
print(f'      {sum(seen.values()) / n:6.2f}/req  in all')
for q, c in seen.most_common():
    if c > n / 100:
        print(f'      {c / n:6.2f}/req  {q}')"
    echo "    server time per request (pg_stat_statements, nested statements included):"
    psql_q "SELECT format('      %6s/req %6s us/req  %s', round(calls / ($rps * ${DUR%s}), 2),
              round((total_exec_time * 1000 / ($rps * ${DUR%s}))::numeric, 1),
              left(regexp_replace(query, '\s+', ' ', 'g'), 90))
            FROM pg_stat_statements WHERE calls > $rps * ${DUR%s} / 100 ORDER BY calls DESC"
  fi
}

# shape DB: the fixture, then 1 api node and 2 behind nginx on the current database.
shape() {
  local db=$1 first second sid vid
  DATA=$WORK/data-$db
  STREAM_PORT=$(free_port); SCHED_PORT=$(free_port)
  # The first node runs every service (the stream service for the fixture's uploads, the
  # scheduler); the second is an api node only.
  node all; first=$PORT
  local api="http://127.0.0.1:$first"
  sid=$(curl -fsS "$api/user" -H 'content-type: application/json' \
    -d '{"user_name":"bench","pwd":"password1"}' | json_field session_id)
  for i in $(seq 1 20); do
    vid=$(curl -fsS "$api/user/bench/videos" -H "X-Session-Id: $sid" \
      -H 'content-type: application/json' -d "{\"name\":\"clip $i\"}" | json_field id)
    { printf '\0\0\0\030ftypisom\0\0\2\0isomiso2'; head -c 20000 /dev/urandom; } |
      curl -fsS -o /dev/null "http://127.0.0.1:$STREAM_PORT/upload/$vid" -H "X-Session-Id: $sid" \
        -H 'content-type: video/mp4' --data-binary @-
  done
  cat >"$WORK/comment.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"content":"a benchmark comment"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Session-Id"] = "$sid"
LUA
  balance "$first"
  measure "$db" "1 api node" feed "$LB/videos?limit=20"
  measure "$db" "1 api node" comment "$LB/videos/$vid/comments" -s "$WORK/comment.lua"
  kill "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null || true
  node api; second=$PORT
  balance "$first" "$second"
  measure "$db" "2 api nodes" feed "$LB/videos?limit=20"
  measure "$db" "2 api nodes" comment "$LB/videos/$vid/comments" -s "$WORK/comment.lua"
  stop_all
}

echo "api behind nginx: wrk -t$THREADS -c$CONNS -d$DUR, $(nproc) cores, $(date -u +%F), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "SQLite (one data dir, WAL, synchronous=FULL):"
unset DOUYIN_DATABASE_URL
shape SQLite
start_postgres
echo "PostgreSQL $(psql_q 'SHOW server_version'):" \
  "$(psql_q "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings
             WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method',
                            'shared_buffers')")"
shape PostgreSQL
echo "CPU/request, PostgreSQL (node+nginx+postgres) / SQLite (node+nginx):"
for s in "1 api node" "2 api nodes"; do
  for w in feed comment; do
    python3 -c "print(f'  {\"$s: $w\":<22} {${CPU[PostgreSQL $s $w]} / ${CPU[SQLite $s $w]}:.2f}' \
      f'  ({${CPU[PostgreSQL $s $w]}} / ${CPU[SQLite $s $w]} us)')"
  done
done
