#!/usr/bin/env bash
# A whole douyin_club cluster on loopback: the scale-out shape of API.md on one machine.
#
#   deploy/cluster.sh up             start it, wait until every /healthz answers, print the URL
#   deploy/cluster.sh status         each process: pid, address, health
#   deploy/cluster.sh down           stop everything and remove the run dir (PostgreSQL's too)
#   deploy/cluster.sh kill NAME      SIGKILL one process (api-1, redis, postgres, ...), as a crash would
#   deploy/cluster.sh stop NAME      stop one process the orderly way (PostgreSQL: a fast shutdown)
#   deploy/cluster.sh start NAME     start a stopped or killed process again, as `up` did
#   deploy/cluster.sh restart NAME   stop NAME if it runs, then start it
#
# What `up` starts, each on a free loopback port and all under one run dir:
#   PostgreSQL (the database: --database-url), Redis (sessions, stream token buckets:
#   --redis-url), Garage (single node, the object store: --blob-store s3), 2 api, 2 stream,
#   2 scheduler and 2 web processes of the binary (--role ...), and nginx (deploy/nginx.conf) in
#   front: the public URL, plus loopback load balancers that the nodes reach each other through.
# Opt-outs, for a machine without PostgreSQL or Redis:
#   DOUYIN_CLUSTER_PG=0     the api, stream and scheduler nodes share one SQLite file in the run
#                           dir instead (one host's worth: SQLite is shared through the file)
#   DOUYIN_CLUSTER_REDIS=0  no Redis: sessions are read from the database, each stream node keeps
#                           its own token buckets
# The database and Redis URLs carry passwords: the nodes get them, with the other secrets, from
# secrets/node.env (mode 0600) in their environment, never on a command line.
#
# Environment:
#   CLUSTER_DIR       the run dir [$PWD/.cluster]: pids/, logs/, secrets/ (0600), data/, nginx/,
#                     postgres/ (as root, a directory under $TMPDIR when the `postgres` user
#                     cannot reach the run dir; postgres/ is then a link to it)
#   BIN               the douyin_club binary [built here with cargo build --release]
#   CLUSTER_PORT      nginx's public port [a free one]
#   MAX_UPLOAD_BYTES  --max-upload-bytes of every node; nginx's body limit follows [1 GiB]
#   RUST_LOG          the nodes' log level [info]
#   Other DOUYIN_* variables reach every node (e.g. DOUYIN_PLAYBACK=redirect).
# Needs: nginx, garage, curl, python3, setsid; PostgreSQL's initdb, pg_ctl, createdb and
# pg_isready (Debian: postgresql, found in /usr/lib/postgresql/*/bin; as root, runuser and a
# `postgres` user); redis-server.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN=$(realpath -m "${CLUSTER_DIR:-$PWD/.cluster}")
# PostgreSQL's directory: $RUN/postgres, or where that link points (see pg_dir).
PG_HOME=$(realpath -m "$RUN/postgres")
PG_AS=()
NODES=(api-1 api-2 stream-1 stream-2 scheduler-1 scheduler-2 web-1 web-2)
BUCKET=douyin
REGION=garage

say() { printf '%s\n' "$*"; }
die() { printf 'cluster: %s\n' "$*" >&2; exit 1; }

# nginx is often in /usr/sbin, outside a user's PATH.
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

need() {
  local tool
  [ -x "$NGINX" ] || die "nginx is not installed (Debian: nginx-light)"
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (needed: $*)"
  done
}

# free_ports N: N distinct unused loopback ports (all held at once while they are picked). They
# come from below the kernel's ephemeral range when there is room: the nodes' own outgoing
# connections (each holds a pool of them to PostgreSQL, Redis and Garage) take ports from that
# range, and one could take a port picked here before its node listens on it.
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
except (OSError, ValueError, IndexError):
    low = 0
held = []
candidates = list(range(10000, low)) if low - 10000 >= 20 * n else []
random.shuffle(candidates)
for port in candidates:
    if len(held) == n:
        break
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        continue
    held.append(s)
while len(held) < n:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
}

hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

# Whether PID is a live process: there, and not a zombie.
alive() {
  local state
  [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# Whether PID is a live process of this cluster: its command line or working directory names
# the run dir or PostgreSQL's directory (so a recycled pid is never signalled).
ours() {
  local pid=$1 root cwd
  alive "$pid" || return 1
  cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || cwd=
  for root in "$RUN" "$PG_HOME"; do
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$root/" && return 0
    case $cwd in "$root" | "$root"/*) return 0 ;; esac
  done
  return 1
}

pid_of() { cat "$RUN/pids/$1.pid" 2>/dev/null || true; }

# record NAME PID HEALTH-URL: the pid file, and where `status` asks after the process.
record() {
  printf '%s\n' "$2" >"$RUN/pids/$1.pid"
  grep -q "^$1 " "$RUN/processes" || printf '%s %s\n' "$1" "$3" >>"$RUN/processes"
}

# wait_for NAME CHECK...: runs CHECK until it succeeds (30 s at most) while NAME is alive.
wait_for() {
  local name=$1 pid
  shift
  pid=$(pid_of "$name")
  for _ in $(seq 1 300); do
    "$@" >/dev/null 2>&1 && return 0
    if ! ours "$pid"; then
      say "$name exited; the end of logs/$name.log:" >&2
      tail -n 20 "$RUN/logs/$name.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  say "$name did not come up in 30 s; the end of logs/$name.log:" >&2
  tail -n 20 "$RUN/logs/$name.log" >&2 || true
  return 1
}

healthy() { curl -fsS --max-time 2 -o /dev/null "$1/healthz"; }

# --- Garage, a single node as bench/s3.sh and tests/api/garage_support.rs start it.
start_garage() {
  local s3=$1 rpc=$2 conf=$RUN/garage/garage.toml
  mkdir -p "$RUN/garage"
  (umask 077 && cat >"$conf" <<CONF
metadata_dir = "$RUN/garage/meta"
data_dir = "$RUN/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(hex 32)"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"
CONF
  )
  (
    # The key Garage creates its bucket with, from the 0600 file (not the command line).
    # shellcheck source=/dev/null
    set -a && . "$RUN/secrets/garage.env" && set +a
    RUST_LOG=garage=warn exec setsid garage -c "$conf" server --single-node --default-bucket \
      </dev/null >>"$RUN/logs/garage.log" 2>&1
  ) &
  record garage $! "http://127.0.0.1:$s3"
  # Ready once the bucket exists (the nodes set its CORS rule at start-up) and S3 answers.
  wait_for garage garage -c "$conf" bucket info "$BUCKET"
  wait_for garage curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$s3/"
}

# --- PostgreSQL: a server of its own (initdb; as root it runs as the `postgres` user, since
# initdb and postgres refuse root), with the role `douyin` (its password only in files) and the
# database `douyin`. Its settings are in its postgresql.conf, so `start postgres` needs no flags.

# pg_tools: PG_BIN, the directory of initdb and pg_ctl (initdb may be a symlink on PATH; Debian
# keeps the tools in /usr/lib/postgresql/<version>/bin), and PG_AS, what runs them as the
# server's user.
pg_tools() {
  local initdb
  initdb=$(command -v initdb || printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
  [ -x "$initdb" ] || die "PostgreSQL is not installed (Debian: postgresql; DOUYIN_CLUSTER_PG=0 uses SQLite)"
  PG_BIN=$(dirname "$(realpath "$initdb")")
  PG_AS=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "as root, PostgreSQL runs as the user postgres, and there is none"
    command -v runuser >/dev/null || die "as root, PostgreSQL is started through runuser (util-linux)"
    PG_AS=(runuser -u postgres --)
  fi
}

# The port PostgreSQL listens on, from its postgresql.conf.
pg_port() { sed -n 's/^port = //p' "$PG_HOME/data/postgresql.conf" | tail -n 1; }

# pg_dir: where PostgreSQL lives ($PG_HOME). As root the server runs as `postgres`, which must
# reach its directory: $RUN/postgres when it can (the run dir becomes 0711), else a directory
# of its own under $TMPDIR (e.g. a run dir under /root), linked from $RUN/postgres.
pg_dir() {
  local dir=$RUN/postgres
  if [ "${#PG_AS[@]}" -gt 0 ]; then
    if "${PG_AS[@]}" test -x "$(dirname "$RUN")"; then
      chmod 711 "$RUN"
      mkdir -p "$dir"
    else
      dir=$(mktemp -d "${TMPDIR:-/tmp}/douyin-cluster-pg.XXXXXX")
      ln -s "$dir" "$RUN/postgres"
    fi
    chown postgres: "$dir"
  else
    mkdir -p "$dir"
  fi
  PG_HOME=$(realpath "$dir")
}

start_postgres() {
  local port=$1 pw
  pg_tools
  pg_dir
  pw=$(hex 16)
  (umask 077 && printf '%s\n' "$pw" >"$PG_HOME/pw")
  [ "${#PG_AS[@]}" -gt 0 ] && chown postgres: "$PG_HOME/pw"
  # The password reaches initdb in a file, not in its arguments (which `ps` shows).
  if ! "${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_HOME/data" -U douyin --pwfile="$PG_HOME/pw" \
    --auth=scram-sha-256 -E UTF8 --locale=C >>"$RUN/logs/postgres.log" 2>&1; then
    rm -f "$PG_HOME/pw"
    tail -n 5 "$RUN/logs/postgres.log" >&2
    die "initdb failed; see $RUN/logs/postgres.log"
  fi
  rm -f "$PG_HOME/pw"
  # TCP on loopback only (the nodes get a TCP URL), the Unix socket in its own directory (not
  # /var/run/postgresql, which may belong to another server). Every node holds a pool of
  # connections: 6 nodes with the database, and room for an operator's psql.
  cat >>"$PG_HOME/data/postgresql.conf" <<CONF

# deploy/cluster.sh
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PG_HOME'
max_connections = 200
CONF
  spawn_postgres
  PGPASSWORD=$pw "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U douyin douyin \
    >>"$RUN/logs/postgres.log" 2>&1 || die "createdb failed; see $RUN/logs/postgres.log"
  printf 'DOUYIN_DATABASE_URL=postgres://douyin:%s@127.0.0.1:%s/douyin\n' "$pw" "$port" \
    >>"$RUN/secrets/node.env"
}

# spawn_postgres: pg_ctl start over $PG_HOME/data, waiting until the server takes connections.
# `up`, `start postgres` and `restart postgres` all use it.
spawn_postgres() {
  local pid port log=$PG_HOME/postgres.log
  port=$(pg_port)
  # A postmaster killed where nobody reaps orphans (a container's PID 1) stays a zombie, and
  # the server would take its lock files for a running server's.
  pid=$(head -n 1 "$PG_HOME/data/postmaster.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && ! alive "$pid"; then
    rm -f "$PG_HOME/data/postmaster.pid" "$PG_HOME/.s.PGSQL.$port.lock"
  fi
  # The server's own log (written as its user); logs/postgres-server.log points at it.
  ln -sfn "$log" "$RUN/logs/postgres-server.log"
  for _ in $(seq 1 150); do
    if "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_HOME/data" -l "$log" -w -t 30 start \
      </dev/null >>"$RUN/logs/postgres.log" 2>&1; then
      record postgres "$(head -n 1 "$PG_HOME/data/postmaster.pid")" "postgres://127.0.0.1:$port"
      wait_for postgres "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -t 1
      return 0
    fi
    # Just after a kill, the dead server's backends hold its shared memory for a moment.
    tail -n 3 "$log" | grep -q 'still in use' || break
    sleep 0.1
  done
  tail -n 5 "$log" >&2 || true
  die "PostgreSQL did not start; see $log"
}

# --- Redis, with a password and no persistence: it is a cache (API.md).
# spawn_redis PORT: redis-server from $RUN/redis/redis.conf, up once it answers at all
# (unauthenticated, a PING is refused with NOAUTH). `up`, `start redis` and `restart redis`
# all use it.
spawn_redis() {
  local port=$1 dir=$RUN/redis
  (cd "$dir" && exec setsid redis-server "$dir/redis.conf" </dev/null >>"$RUN/logs/redis.log" 2>&1) &
  record redis $! "redis://127.0.0.1:$port"
  wait_for redis bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && printf 'PING\r\n' >&3 && head -c1 <&3"
}

start_redis() {
  local port=$1 dir=$RUN/redis pw
  mkdir -p "$dir"
  pw=$(hex 16)
  (umask 077 && printf 'bind 127.0.0.1\nport %s\ndir %s\nrequirepass %s\nsave ""\nappendonly no\n' \
    "$port" "$dir" "$pw" >"$dir/redis.conf")
  spawn_redis "$port"
  printf 'DOUYIN_REDIS_URL=redis://:%s@127.0.0.1:%s/0\n' "$pw" "$port" >>"$RUN/secrets/node.env"
}

# --- The nodes.
# spawn_node NAME ROLE PORT: one process of the binary with --role ROLE on 127.0.0.1:PORT and
# the flags every node shares; its secrets come from the 0600 environment file, never argv.
spawn_node() {
  local name=$1 role=$2 addr=127.0.0.1:$3 data=$RUN/data
  # A web node keeps nothing: it gets an empty dir of its own, not the shared one.
  [ "$role" = web ] && data=$RUN/$name
  (
    # shellcheck source=/dev/null
    set -a && . "$RUN/secrets/node.env" && set +a
    exec setsid "$BIN" --role "$role" "--$role-addr" "$addr" --data-dir "$data" "${NODE_FLAGS[@]}" \
      </dev/null >>"$RUN/logs/$name.log" 2>&1
  ) &
  record "$name" $! "http://$addr"
}

# --- nginx, from deploy/nginx.conf.
servers() {
  local port
  for port in "$@"; do
    printf '        server 127.0.0.1:%s max_fails=1 fail_timeout=10s;\n' "$port"
  done
}

render_nginx() {
  local conf user_line=""
  # As root, nginx would switch its workers to `nobody`, who cannot enter the 0700 run dir:
  # the workers stay the caller's, as they are for any other user.
  [ "$(id -u)" = 0 ] && user_line="user $(id -un) $(id -gn);"
  conf=$(<"$ROOT/deploy/nginx.conf")
  conf=${conf//@USER_LINE@/$user_line}
  conf=${conf//@PUBLIC_LISTEN@/127.0.0.1:$PUBLIC_PORT}
  conf=${conf//@API_LB_LISTEN@/127.0.0.1:$API_LB}
  conf=${conf//@STREAM_LB_LISTEN@/127.0.0.1:$STREAM_LB}
  conf=${conf//@SCHEDULER_LB_LISTEN@/127.0.0.1:$SCHEDULER_LB}
  conf=${conf//@WEB_SERVERS@/$(servers "${PORT[web-1]}" "${PORT[web-2]}")}
  conf=${conf//@API_SERVERS@/$(servers "${PORT[api-1]}" "${PORT[api-2]}")}
  conf=${conf//@STREAM_SERVERS@/$(servers "${PORT[stream-1]}" "${PORT[stream-2]}")}
  conf=${conf//@SCHEDULER_SERVERS@/$(servers "${PORT[scheduler-1]}" "${PORT[scheduler-2]}")}
  # Room for a multipart form's framing around the largest file; the node refuses the file
  # itself past --max-upload-bytes, in API.md's shape.
  conf=${conf//@MAX_BODY@/$((MAX_UPLOAD_BYTES + 1048576))}
  if grep -qE '@[A-Z_]+@' <<<"$conf"; then
    die "deploy/nginx.conf has a place this script does not fill: $(grep -oE '@[A-Z_]+@' <<<"$conf" | head -n 1)"
  fi
  mkdir -p "$RUN/nginx/logs" "$RUN/nginx/tmp"
  printf '%s\n' "$conf" >"$RUN/nginx/nginx.conf"
  cp "$ROOT/deploy/douyin-errors.conf" "$RUN/nginx/"
}

start_nginx() {
  local args
  args=(-p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -e "$RUN/nginx/logs/error.log")
  "$NGINX" "${args[@]}" -t -q || die "nginx refused the generated $RUN/nginx/nginx.conf"
  # nginx puts itself in the background; its master's pid is in nginx/nginx.pid.
  if ! "$NGINX" "${args[@]}" </dev/null >>"$RUN/logs/nginx.log" 2>&1; then
    tail -n 3 "$RUN/nginx/logs/error.log" >&2 || true
    die "nginx did not start"
  fi
  for _ in $(seq 1 100); do [ -s "$RUN/nginx/nginx.pid" ] && break; sleep 0.05; done
  [ -s "$RUN/nginx/nginx.pid" ] || die "nginx wrote no pid file; see $RUN/nginx/logs/error.log"
  record nginx "$(cat "$RUN/nginx/nginx.pid")" "$PUBLIC_URL"
}

locate_binary() {
  if [ -n "${BIN:-}" ]; then
    [ -x "$BIN" ] || die "BIN=$BIN is not an executable"
    BIN=$(realpath "$BIN")
    return
  fi
  say "building the release binary (cargo build --release; BIN= to use another) ..."
  (cd "$ROOT" && cargo build --release --quiet)
  BIN=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/douyin_club
}

UP_DONE=0
up_failed() {
  [ "$UP_DONE" = 1 ] && return
  say "up failed: stopping what started; the logs stay in $RUN/logs (deploy/cluster.sh down removes them)" >&2
  stop_all >/dev/null 2>&1 || true
}

# on VAR: whether the opt-out VAR (DOUYIN_CLUSTER_PG, DOUYIN_CLUSTER_REDIS) is 1, its default.
on() {
  case ${!1:-1} in
    1) return 0 ;;
    0) return 1 ;;
    *) die "$1 is 1 (the default) or 0, not ${!1}" ;;
  esac
}

up() {
  local tools=(garage curl python3 setsid)
  on DOUYIN_CLUSTER_REDIS && tools+=(redis-server)
  need "${tools[@]}"
  on DOUYIN_CLUSTER_PG && pg_tools
  [ -e "$RUN" ] && die "$RUN exists: a cluster or its leftovers (deploy/cluster.sh status, down)"
  locate_binary
  local started
  started=$(date +%s%N)
  mkdir -p "$RUN"
  chmod 700 "$RUN"
  mkdir -p "$RUN/pids" "$RUN/logs" "$RUN/secrets" "$RUN/data"
  chmod 700 "$RUN/secrets"
  : >"$RUN/processes"
  trap up_failed EXIT

  # shellcheck disable=SC2207 # the ports are numbers
  local ports=($(free_ports 16)) name i=0
  declare -gA PORT
  for name in "${NODES[@]}" garage-s3 garage-rpc api-lb stream-lb scheduler-lb postgres redis; do
    PORT[$name]=${ports[$i]}
    i=$((i + 1))
  done
  PUBLIC_PORT=${CLUSTER_PORT:-${ports[15]}}
  API_LB=${PORT[api-lb]} STREAM_LB=${PORT[stream-lb]} SCHEDULER_LB=${PORT[scheduler-lb]}
  PUBLIC_URL=http://127.0.0.1:$PUBLIC_PORT
  MAX_UPLOAD_BYTES=${MAX_UPLOAD_BYTES:-1073741824}
  local s3=http://127.0.0.1:${PORT[garage-s3]} access secret
  access=GK$(hex 12)
  secret=$(hex 32)

  # Secrets: one internal token for every node, the store's key (the database's and Redis's
  # URLs follow); files only, mode 0600.
  (
    umask 077
    head -c 32 /dev/urandom | base64 | tr -d '=+/\n' >"$RUN/secrets/internal.token"
    printf 'DOUYIN_INTERNAL_TOKEN=%s\nDOUYIN_S3_SECRET_ACCESS_KEY=%s\n' \
      "$(cat "$RUN/secrets/internal.token")" "$secret" >"$RUN/secrets/node.env"
    printf 'GARAGE_DEFAULT_ACCESS_KEY=%s\nGARAGE_DEFAULT_SECRET_KEY=%s\nGARAGE_DEFAULT_BUCKET=%s\n' \
      "$access" "$secret" "$BUCKET" >"$RUN/secrets/garage.env"
  )

  start_garage "${PORT[garage-s3]}" "${PORT[garage-rpc]}"

  local database caches
  if on DOUYIN_CLUSTER_PG; then
    start_postgres "${PORT[postgres]}"
    database="postgres     127.0.0.1:${PORT[postgres]}  database douyin (--database-url), data in $PG_HOME; feed changes: a version row in it"
  else
    database="database     one SQLite file in $RUN/data, shared by the nodes of this host (DOUYIN_CLUSTER_PG=0); feed changes and logouts through douyin.sqlite3-changes"
  fi
  if on DOUYIN_CLUSTER_REDIS; then
    start_redis "${PORT[redis]}"
    caches="redis        127.0.0.1:${PORT[redis]}  sessions, stream token buckets (--redis-url; a cache, no persistence)"
  elif on DOUYIN_CLUSTER_PG; then
    caches="no Redis     sessions read from PostgreSQL on every request; a token bucket per stream node (DOUYIN_CLUSTER_REDIS=0)"
  else
    caches="no Redis     sessions and token buckets in each process (DOUYIN_CLUSTER_REDIS=0)"
  fi

  # What every node shares. The nodes reach each other through nginx's loopback balancers, so
  # a dead node is skipped there too; they believe X-Forwarded-For from loopback (nginx, and
  # the web nodes' own relays).
  NODE_FLAGS=(
    --public-url "$PUBLIC_URL"
    --trusted-proxies "127.0.0.1,::1"
    --api-url "http://127.0.0.1:$API_LB"
    --stream-url "http://127.0.0.1:$STREAM_LB"
    --scheduler-url "http://127.0.0.1:$SCHEDULER_LB"
    --max-upload-bytes "$MAX_UPLOAD_BYTES"
    --blob-store s3 --s3-endpoint "$s3" --s3-bucket "$BUCKET" --s3-region "$REGION"
    --s3-access-key-id "$access"
  )
  export RUST_LOG=${RUST_LOG:-info}
  # For `restart NAME` (no secrets among them).
  printf '%s\n' "${NODE_FLAGS[@]}" >"$RUN/node.flags"
  printf '%s\n' "$BIN" >"$RUN/node.bin"

  # The first node migrates the schema alone; then the rest start together.
  spawn_node api-1 api "${PORT[api-1]}"
  wait_for api-1 healthy "http://127.0.0.1:${PORT[api-1]}"
  for name in "${NODES[@]:1}"; do
    spawn_node "$name" "${name%-*}" "${PORT[$name]}"
  done
  for name in "${NODES[@]:1}"; do
    wait_for "$name" healthy "http://127.0.0.1:${PORT[$name]}"
  done

  render_nginx
  start_nginx
  local lb
  for lb in "$PUBLIC_URL" "http://127.0.0.1:$API_LB" "http://127.0.0.1:$STREAM_LB" \
    "http://127.0.0.1:$SCHEDULER_LB"; do
    wait_for nginx healthy "$lb"
  done

  cat >"$RUN/cluster.env" <<ENV
PUBLIC_URL=$PUBLIC_URL
API_LB=http://127.0.0.1:$API_LB
STREAM_LB=http://127.0.0.1:$STREAM_LB
SCHEDULER_LB=http://127.0.0.1:$SCHEDULER_LB
S3_ENDPOINT=$s3
ENV
  UP_DONE=1
  trap - EXIT

  say "douyin_club cluster up in $(( ($(date +%s%N) - started) / 1000000 )) ms, run dir $RUN"
  say "  nginx        $PUBLIC_URL (public); loopback balancers: api :$API_LB, stream :$STREAM_LB, scheduler :$SCHEDULER_LB"
  for name in "${NODES[@]}"; do
    say "  $(printf '%-12s' "$name") 127.0.0.1:${PORT[$name]}  --role ${name%-*}"
  done
  say "  garage       $s3  bucket $BUCKET (--blob-store s3)"
  say "  $database"
  say "  $caches"
  say "  secrets      $RUN/secrets (mode 0600): node.env is every node's environment, the only place the passwords are"
  say "  binary $BIN; logs in $RUN/logs; deploy/cluster.sh status | kill|stop|start|restart NAME | down"
  say ""
  say "URL: $PUBLIC_URL/"
}

# stop SIGNAL NAME...: signals each named process of this cluster, waits up to 10 s for all of
# them, then kills what is left.
stop() {
  local sig=$1 name pid pids=()
  shift
  for name in "$@"; do
    pid=$(pid_of "$name")
    if ours "$pid"; then
      kill -s "$sig" "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  [ "${#pids[@]}" -gt 0 ] || return 0
  for _ in $(seq 1 100); do
    local left=0
    for pid in "${pids[@]}"; do ours "$pid" && left=1; done
    [ "$left" = 0 ] && return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if ours "$pid"; then
      say "pid $pid did not stop on SIG$sig: killed" >&2
      kill -s KILL "$pid" 2>/dev/null || true
    fi
  done
}

# The signal of an orderly stop: PostgreSQL's fast shutdown (SIGTERM, its "smart" one, would
# wait for every node's pooled connections to close); SIGTERM for the rest.
stop_signal() {
  case $1 in
    postgres) echo INT ;;
    *) echo TERM ;;
  esac
}

stop_all() {
  # The door first, then the nodes together, then what they stand on.
  stop TERM nginx
  stop TERM "${NODES[@]}"
  stop TERM garage redis
  stop "$(stop_signal postgres)" postgres
}

down() {
  if [ ! -e "$RUN" ]; then
    say "no cluster at $RUN"
    return 0
  fi
  stop_all
  # PostgreSQL's directory, when it is not inside the run dir (pg_dir).
  case $PG_HOME in "$RUN"/*) ;; *) [ -L "$RUN/postgres" ] && rm -rf "$PG_HOME" ;; esac
  rm -rf "$RUN"
  say "cluster at $RUN stopped and removed"
}

status() {
  [ -f "$RUN/processes" ] || die "no cluster at $RUN"
  local name url pid health all=0
  printf '%-12s %-8s %-28s %s\n' PROCESS PID URL HEALTH
  while read -r name url; do
    pid=$(pid_of "$name")
    if ! ours "$pid"; then
      health="not running"
      all=1
    elif [ -z "$url" ]; then
      health="running"
    elif [ "$name" = garage ]; then
      health=$(curl -s --max-time 2 -o /dev/null -w 'S3 answers %{http_code}' "$url/") || {
        health="no answer"
        all=1
      }
    elif [ "$name" = postgres ]; then
      pg_tools
      health=$("$PG_BIN/pg_isready" -h 127.0.0.1 -p "${url##*:}" -t 2 2>&1) || all=1
    elif [ "$name" = redis ]; then
      health=running
    else
      health=$(curl -sS --max-time 2 "$url/healthz" 2>&1) || all=1
    fi
    printf '%-12s %-8s %-28s %s\n' "$name" "${pid:--}" "${url:--}" "$health"
  done <"$RUN/processes"
  return "$all"
}

# known NAME: dies unless NAME is a process of this cluster.
known() {
  [ -f "$RUN/processes" ] || die "no cluster at $RUN"
  grep -q "^$1 " "$RUN/processes" || die "no $1 in this cluster: $(cut -d' ' -f1 "$RUN/processes" | tr '\n' ' ')"
}

# kill NAME: SIGKILL one process of this cluster (a crash: no shutdown, nothing flushed) and
# wait until it is gone. Its pid file stays; `status` shows it as not running.
kill_one() {
  local name=$1 pid
  known "$name"
  pid=$(pid_of "$name")
  ours "$pid" || die "$name is not running in $RUN"
  kill -s KILL "$pid"
  for _ in $(seq 1 100); do
    ours "$pid" || { say "$name (pid $pid) killed"; return 0; }
    sleep 0.05
  done
  die "$name (pid $pid) still runs 5 s after SIGKILL"
}

# stop NAME: the orderly stop of one process (what `down` does to each), waiting until it is
# gone; `start NAME` brings it back.
stop_one() {
  local name=$1 pid
  known "$name"
  pid=$(pid_of "$name")
  ours "$pid" || die "$name is not running in $RUN"
  stop "$(stop_signal "$name")" "$name"
  say "$name (pid $pid) stopped"
}

# start NAME: start a stopped or killed process again as `up` did: a node on its port with the
# flags `up` gave it (other DOUYIN_* variables come from the caller's environment, as with
# `up`); Redis on its port, dir and password (empty, as after a crash); PostgreSQL over its
# data (after a kill, through crash recovery).
start_one() {
  local name=$1 port url
  known "$name"
  ours "$(pid_of "$name")" && die "$name still runs"
  case $name in
    redis)
      port=$(sed -n 's/^port //p' "$RUN/redis/redis.conf")
      spawn_redis "$port"
      say "redis started on 127.0.0.1:$port (pid $(pid_of redis))"
      return
      ;;
    postgres)
      pg_tools
      spawn_postgres
      say "postgres started on 127.0.0.1:$(pg_port) (pid $(pid_of postgres))"
      return
      ;;
  esac
  case " ${NODES[*]} " in *" $name "*) ;; *) die "start knows the nodes, redis and postgres, not $name" ;; esac
  url=$(sed -n "s/^$name //p" "$RUN/processes")
  port=${url##*:}
  mapfile -t NODE_FLAGS <"$RUN/node.flags"
  BIN=$(<"$RUN/node.bin")
  export RUST_LOG=${RUST_LOG:-info}
  spawn_node "$name" "${name%-*}" "$port"
  wait_for "$name" healthy "$url"
  say "$name started on ${url#http://} (pid $(pid_of "$name"))"
}

restart_one() {
  known "$1"
  if ours "$(pid_of "$1")"; then
    stop_one "$1"
  fi
  start_one "$1"
}

one() {
  [ $# = 2 ] || die "usage: deploy/cluster.sh $1 NAME"
  "$1_one" "$2"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  kill | stop | start | restart) one "$@" ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
