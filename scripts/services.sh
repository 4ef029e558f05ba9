#!/usr/bin/env bash
# Makes sure the Redis and PostgreSQL that Teleread needs answer at REDIS_URL and DATABASE_URL.
#
#   scripts/services.sh [start]   reuse what answers; otherwise start a private server under ./data
#   scripts/services.sh status    report, change nothing
#   scripts/services.sh stop      stop only the servers this script started (./data/redis, our cluster)
#
# A server that already answers is only used, never restarted or stopped: it may belong to the
# system, to docker compose or to another project. Servers are started only for loopback URLs.
# Written for bash 3.2 too (macOS), so no {fd} redirections, ${x,,} or mapfile.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
DATA_DIR=${TELEREAD_DATA_DIR:-$ROOT/data}
# Absolute, because Redis changes into its --dir and `stop` compares that with this path.
case $DATA_DIR in /*) ;; *) DATA_DIR=$PWD/$DATA_DIR ;; esac
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/teleread}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}

REDIS_DIR=$DATA_DIR/redis
REDIS_PIDFILE=$REDIS_DIR/redis.pid
PG_PRIMARY_DIR=$DATA_DIR/postgres
# Postgres refuses to run as root, and the user it runs as must be able to reach its data directory.
# When the checkout sits under a private directory (/root is 0700) the cluster goes here instead;
# the name depends only on the checkout, so `stop` finds it again.
PG_FALLBACK_DIR=/var/tmp/teleread-pg-$(printf '%s' "$DATA_DIR" | cksum | cut -d' ' -f1)
WAIT_STEPS=50 # x 0.2 s

usage() {
  sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

say() { printf '%s\n' "$*"; }
warn() { printf '%s\n' "$*" >&2; }
die() {
  warn "$*"
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# Paths inside the checkout are shown as ./data/…, the way a developer types them.
show_path() {
  case $1 in
  "$ROOT"/*) printf './%s' "${1#"$ROOT"/}" ;;
  *) printf '%s' "$1" ;;
  esac
}

redact() { printf '%s' "$1" | sed -E 's#(://[^:/@]*:)[^@]*@#\1***@#'; }

with_timeout() {
  local secs=$1
  shift
  if have timeout; then timeout "$secs" "$@"; else "$@"; fi
}

url_decode() {
  local s=$1
  printf '%b' "${s//%/\\x}"
}

# Splits scheme://[user[:password]@]host[:port][/path][?query] into URL_* variables.
parse_url() {
  local url=$1 rest userinfo hostport
  [[ $url == *://* ]] || die "not a URL: $(redact "$url")"
  URL_SCHEME=${url%%://*}
  rest=${url#*://}
  rest=${rest%%#*}
  URL_QUERY=''
  if [[ $rest == *'?'* ]]; then
    URL_QUERY=${rest#*\?}
    rest=${rest%%\?*}
  fi
  URL_AUTHORITY=${rest%%/*}
  URL_PATH=''
  if [[ $rest == */* ]]; then URL_PATH=$(url_decode "${rest#*/}"); fi
  userinfo=''
  hostport=$URL_AUTHORITY
  if [[ $URL_AUTHORITY == *@* ]]; then
    userinfo=${URL_AUTHORITY%@*}
    hostport=${URL_AUTHORITY##*@}
  fi
  URL_HOSTPORT=$hostport
  URL_USER=$(url_decode "${userinfo%%:*}")
  URL_PASS=''
  if [[ $userinfo == *:* ]]; then URL_PASS=$(url_decode "${userinfo#*:}"); fi
  URL_PORT=''
  if [[ $hostport == \[* ]]; then
    URL_HOST=${hostport%%]*}
    URL_HOST=${URL_HOST#[}
    hostport=${hostport#*]}
    if [[ $hostport == :* ]]; then URL_PORT=${hostport#:}; fi
  else
    URL_HOST=${hostport%%:*}
    if [[ $hostport == *:* ]]; then URL_PORT=${hostport#*:}; fi
  fi
  if [[ -n $URL_PORT && ! $URL_PORT =~ ^[0-9]+$ ]]; then die "bad port in $(redact "$url")"; fi
  return 0
}

is_loopback() {
  case $1 in
  localhost | 127.* | ::1) return 0 ;;
  *) return 1 ;;
  esac
}

# The address a server we start listens on: the URL's own loopback address.
listen_address() {
  case $1 in
  localhost) printf '127.0.0.1' ;;
  *) printf '%s' "$1" ;;
  esac
}

pid_alive() {
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  if [[ -d /proc/self ]]; then [[ -d /proc/$1 ]]; else kill -0 "$1" 2>/dev/null; fi
}

tcp_open() {
  # shellcheck disable=SC2016 # expanded by the inner bash, which gets the values as $1 $2
  with_timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

is_debian_root() { [[ -f /etc/debian_version && $(id -u) -eq 0 ]] && have apt-get; }

apt_install() {
  warn "$1: installing $2 with apt-get (root on Debian)…"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

missing_tool() {
  local service=$1 url=$2 what=$3 debian=$4 brew=$5
  die "$service: nothing answers at $(redact "$url") and $what is not installed.
  Install it:  sudo apt-get install $debian   (Debian/Ubuntu)
               brew install $brew   (macOS)
  or run both in containers:  docker compose up -d redis postgres
               (then DATABASE_URL=postgres://postgres:teleread@127.0.0.1:5432/teleread)"
}

# ---------------------------------------------------------------- Redis

redis_parse() {
  parse_url "$REDIS_URL"
  case $URL_SCHEME in
  redis | rediss) ;;
  *) die "redis: REDIS_URL must start with redis:// or rediss://, got $(redact "$REDIS_URL")" ;;
  esac
  R_SCHEME=$URL_SCHEME
  R_HOST=${URL_HOST:-127.0.0.1}
  R_PORT=${URL_PORT:-6379}
  R_USER=$URL_USER
  R_PASS=$URL_PASS
}

# Answers means PONG: a port that takes connections but refuses AUTH is not a usable Redis.
redis_answers() {
  local out
  if have redis-cli; then
    out=$(with_timeout 5 redis-cli --no-auth-warning -u "$REDIS_URL" ping 2>/dev/null) || return 1
    [[ $out == PONG ]]
  else
    [[ $R_SCHEME == redis ]] || return 1
    # shellcheck disable=SC2016 # expanded by the inner bash; a subshell keeps a failed connect local
    with_timeout 5 bash -c '
      exec 3<>"/dev/tcp/$1/$2" || exit 1
      if [[ -n $4 ]]; then
        if [[ -n $3 ]]; then
          printf "*3\r\n\$4\r\nAUTH\r\n\$%d\r\n%s\r\n\$%d\r\n%s\r\n" "${#3}" "$3" "${#4}" "$4" >&3
        else
          printf "*2\r\n\$4\r\nAUTH\r\n\$%d\r\n%s\r\n" "${#4}" "$4" >&3
        fi
        IFS= read -r -t 3 reply <&3 || exit 1
        # Redis without a password rejects AUTH yet serves everyone, like redis-cli -u assumes.
        [[ $reply == +OK* || $reply == *"without any password configured"* ]] || exit 1
      fi
      printf "*1\r\n\$4\r\nPING\r\n" >&3
      IFS= read -r -t 3 reply <&3 || exit 1
      [[ $reply == +PONG* ]]
    ' _ "$R_HOST" "$R_PORT" "$R_USER" "$R_PASS" 2>/dev/null
  fi
}

# The pid in our pid file counts only if that process is a redis-server working in our directory:
# pids are reused, and a stale file must never make us signal someone else's process.
redis_our_pid() {
  local pid cwd
  [[ -f $REDIS_PIDFILE ]] || return 1
  pid=$(head -n 1 "$REDIS_PIDFILE")
  pid_alive "$pid" || return 1
  if [[ -d /proc/self ]]; then
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]] || return 1
    cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
    [[ $cwd == "$REDIS_DIR" ]] || return 1
  else
    ps -p "$pid" -o command= 2>/dev/null | grep -q redis-server || return 1
  fi
  printf '%s' "$pid"
}

redis_policy_note() {
  local policy
  have redis-cli || return 0
  policy=$(with_timeout 5 redis-cli --no-auth-warning -u "$REDIS_URL" config get maxmemory-policy 2>/dev/null | sed -n 2p) || return 0
  if [[ -n $policy && $policy != noeviction ]]; then
    printf '; WARNING maxmemory-policy is %s, BullMQ needs noeviction' "$policy"
  fi
}

find_redis_server() {
  local d
  if have redis-server; then
    command -v redis-server
    return 0
  fi
  for d in /usr/bin /usr/sbin /usr/local/bin /opt/homebrew/bin; do
    if [[ -x $d/redis-server ]]; then
      printf '%s' "$d/redis-server"
      return 0
    fi
  done
  return 1
}

redis_start() {
  local url pid server out
  redis_parse
  url=$(redact "$REDIS_URL")
  if redis_answers; then
    if pid=$(redis_our_pid); then
      say "redis: answering at $url (started by teleread, pid $pid, data in $(show_path "$REDIS_DIR"))$(redis_policy_note)"
    else
      say "redis: answering at $url (already running)$(redis_policy_note)"
    fi
    return 0
  fi
  is_loopback "$R_HOST" ||
    die "redis: nothing answers at $url. Only loopback servers are started here: start that one, or fix REDIS_URL."
  [[ $R_SCHEME == redis ]] || die "redis: nothing answers at $url, and a TLS (rediss://) server is not started here."
  if pid=$(redis_our_pid); then
    die "redis: teleread's own redis-server (pid $pid) runs but does not answer at $url (another port or password?). Run: scripts/services.sh stop"
  fi
  if tcp_open "$R_HOST" "$R_PORT"; then
    die "redis: something listens on $R_HOST:$R_PORT but does not answer PING at $url (wrong password, or not Redis?)"
  fi
  if ! server=$(find_redis_server); then
    is_debian_root || missing_tool redis "$REDIS_URL" redis-server redis-server redis
    apt_install redis redis-server
    # On a machine with an init system the package starts its own server, possibly at this URL.
    if redis_answers; then
      say "redis: answering at $url (installed by apt-get, which started the system redis-server)$(redis_policy_note)"
      return 0
    fi
    server=$(find_redis_server) || die "redis: apt-get installed redis-server but it is not on PATH"
  fi
  mkdir -p "$REDIS_DIR"
  local args=(--port "$R_PORT" --bind "$(listen_address "$R_HOST")" --dir "$REDIS_DIR"
    --appendonly yes --maxmemory-policy noeviction
    --daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_DIR/redis.log")
  if [[ -n $R_PASS ]]; then
    [[ -z $R_USER || $R_USER == default ]] ||
      die "redis: REDIS_URL names ACL user '$R_USER'; create it yourself, this script only sets requirepass"
    args+=(--requirepass "$R_PASS")
  fi
  if ! out=$("$server" "${args[@]}" 2>&1); then
    die "redis: $server failed to start: $out"
  fi
  local i=0
  until redis_answers; do
    i=$((i + 1))
    if ((i > WAIT_STEPS)); then
      warn "redis: started $server but nothing answers at $url after 10 s; last lines of $(show_path "$REDIS_DIR/redis.log"):"
      tail -n 15 "$REDIS_DIR/redis.log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.2
  done
  pid=$(redis_our_pid) || pid='?'
  say "redis: answering at $url (started by teleread, pid $pid, data in $(show_path "$REDIS_DIR"))"
}

redis_status() {
  local url pid
  redis_parse
  url=$(redact "$REDIS_URL")
  if redis_answers; then
    if pid=$(redis_our_pid); then
      say "redis: answering at $url (started by teleread, pid $pid, data in $(show_path "$REDIS_DIR"))$(redis_policy_note)"
    else
      say "redis: answering at $url (not started by teleread)$(redis_policy_note)"
    fi
    return 0
  fi
  if pid=$(redis_our_pid); then
    say "redis: NOT answering at $url; teleread's redis-server (pid $pid) runs elsewhere"
  else
    say "redis: NOT answering at $url"
  fi
  return 1
}

redis_stop() {
  local pid i=0
  if ! pid=$(redis_our_pid); then
    if [[ -f $REDIS_PIDFILE ]]; then
      say "redis: teleread's redis-server is not running (stale $(show_path "$REDIS_PIDFILE"))"
    elif [[ -d $REDIS_DIR ]]; then
      say "redis: teleread's redis-server is not running"
    else
      say "redis: nothing started by teleread; left alone"
    fi
    return 0
  fi
  # SIGTERM makes Redis flush the append-only file before it exits.
  kill -TERM "$pid"
  while pid_alive "$pid"; do
    i=$((i + 1))
    ((i <= WAIT_STEPS)) || die "redis: pid $pid still running 10 s after SIGTERM"
    sleep 0.2
  done
  say "redis: stopped teleread's redis-server (pid $pid, data kept in $(show_path "$REDIS_DIR"))"
}

# ---------------------------------------------------------------- PostgreSQL

pg_parse() {
  parse_url "$DATABASE_URL"
  case $URL_SCHEME in
  postgres | postgresql) ;;
  *) die "postgres: DATABASE_URL must start with postgres:// or postgresql://, got $(redact "$DATABASE_URL")" ;;
  esac
  [[ -n $URL_HOST ]] || die "postgres: DATABASE_URL needs a host, e.g. postgres://postgres@127.0.0.1:5432/teleread"
  P_SCHEME=$URL_SCHEME
  P_HOST=$URL_HOST
  P_PORT=${URL_PORT:-5432}
  # libpq's own defaults: the OS user, and a database named like the user.
  P_USER=${URL_USER:-$(id -un)}
  P_PASS=$URL_PASS
  P_DB=${URL_PATH:-$P_USER}
  P_QUERY=$URL_QUERY
  P_AUTHORITY=$URL_AUTHORITY
  P_HOSTPORT=$URL_HOSTPORT
  P_MAINT_URL="$P_SCHEME://$P_AUTHORITY/postgres${P_QUERY:+?$P_QUERY}"
  # Our clusters are made with `initdb -U postgres`: that superuser creates roles and databases.
  P_SUPER_URL="$P_SCHEME://postgres@$P_HOSTPORT/postgres${P_QUERY:+?$P_QUERY}"
}

# 0 = accepting connections, 1 = up but rejecting (starting or stopping), 2 = nothing answers.
pg_probe() {
  local rc=0
  if have pg_isready; then
    with_timeout 10 pg_isready -q -t 3 -d "$DATABASE_URL" || rc=$?
    case $rc in
    0) return 0 ;;
    1) return 1 ;;
    *) return 2 ;;
    esac
  fi
  tcp_open "$P_HOST" "$P_PORT" && return 0
  return 2
}

pg_wait() {
  local i=0
  until pg_probe; do
    i=$((i + 1))
    ((i <= WAIT_STEPS)) || return 1
    sleep 0.2
  done
}

pg_major_of() {
  local v
  v=$("$1/pg_ctl" --version 2>/dev/null | sed -nE 's/^[^0-9]*([0-9]+).*/\1/p' | head -n 1)
  printf '%s' "$v"
}

# Prints a directory holding initdb and pg_ctl, of major version $1 when given (an existing cluster
# only starts with its own major version).
pg_find_bin() {
  local want=${1:-} d candidates=()
  if [[ -n $want ]]; then candidates+=("/usr/lib/postgresql/$want/bin"); fi
  if have pg_ctl; then candidates+=("$(dirname "$(command -v pg_ctl)")"); fi
  # Newest major version first.
  while IFS= read -r d; do candidates+=("$d"); done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5nr)
  candidates+=(/usr/local/bin /usr/local/pgsql/bin /opt/homebrew/bin /usr/bin)
  for d in "${candidates[@]}"; do
    [[ -x $d/initdb && -x $d/pg_ctl ]] || continue
    if [[ -n $want && $(pg_major_of "$d") != "$want" ]]; then continue; fi
    printf '%s' "$d"
    return 0
  done
  return 1
}

# Postgres refuses to run as root; as root we run it as `postgres`, or as `teleread` if that is
# missing. Prints nothing when no switch is needed.
pg_run_user() {
  local dir=${1:-}
  [[ $(id -u) -eq 0 ]] || return 0
  if [[ -n $dir && -e $dir ]]; then
    stat -c %U "$dir"
    return 0
  fi
  if id -u postgres >/dev/null 2>&1; then
    printf 'postgres'
    return 0
  fi
  if ! id -u teleread >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin teleread >/dev/null 2>&1 ||
      adduser --system --no-create-home --group teleread >/dev/null 2>&1 ||
      die "postgres: cannot create a system user to run PostgreSQL (it refuses to run as root)"
  fi
  printf 'teleread'
}

# Runs a command as $PG_USER_RUN (when set), from / so a private working directory does not matter.
pg_run() {
  if [[ -z ${PG_USER_RUN:-} ]]; then
    "$@"
  elif have runuser; then
    (cd / && runuser -u "$PG_USER_RUN" -- "$@")
  else
    (cd / && su -s /bin/sh "$PG_USER_RUN" -c "$(printf '%q ' "$@")")
  fi
}

# Picks the cluster directory: an existing one (primary first), else the primary when the
# run-as user can write there, else the fallback under /var/tmp.
pg_pick_dir() {
  PG_DATA=$PG_PRIMARY_DIR
  PG_DIR_NOTE=''
  if [[ -f $PG_PRIMARY_DIR/PG_VERSION ]]; then return 0; fi
  if [[ -f $PG_FALLBACK_DIR/PG_VERSION ]]; then
    PG_DATA=$PG_FALLBACK_DIR
    return 0
  fi
  [[ $(id -u) -eq 0 ]] || return 0
  mkdir -p "$PG_PRIMARY_DIR"
  chown "$PG_USER_RUN" "$PG_PRIMARY_DIR"
  chmod 700 "$PG_PRIMARY_DIR"
  if pg_run test -w "$PG_PRIMARY_DIR" -a -x "$PG_PRIMARY_DIR"; then return 0; fi
  rmdir "$PG_PRIMARY_DIR" 2>/dev/null || true
  PG_DATA=$PG_FALLBACK_DIR
  PG_DIR_NOTE="; user $PG_USER_RUN cannot reach $(show_path "$PG_PRIMARY_DIR"), so the cluster lives in $PG_FALLBACK_DIR"
}

# Prints the postmaster pid when a server runs from $1 on port $2 (postmaster.pid line 4 is the port).
pg_our_pid() {
  local dir=$1 port=${2:-} pid
  [[ -r $dir/postmaster.pid ]] || return 1
  pid=$(sed -n 1p "$dir/postmaster.pid")
  pid_alive "$pid" || return 1
  if [[ -n $port && $(sed -n 4p "$dir/postmaster.pid") != "$port" ]]; then return 1; fi
  printf '%s' "$pid"
}

pg_our_dir_running() {
  local d
  for d in "$PG_PRIMARY_DIR" "$PG_FALLBACK_DIR"; do
    if pg_our_pid "$d" "$1" >/dev/null; then
      printf '%s' "$d"
      return 0
    fi
  done
  return 1
}

psql_at() {
  local url=$1
  shift
  PGCONNECT_TIMEOUT=5 psql "$url" -X -q -t -A -v ON_ERROR_STOP=1 "$@"
}

# Creates the role named in DATABASE_URL in a cluster we own (initdb made only `postgres`).
pg_ensure_role() {
  local exists
  [[ $P_USER != postgres ]] || return 0
  exists=$(psql_at "$P_SUPER_URL" -v role="$P_USER" <<<"SELECT 1 FROM pg_roles WHERE rolname = :'role'") ||
    die "postgres: cannot connect as postgres to $(redact "$P_SUPER_URL") to check role $P_USER"
  [[ $exists == 1 ]] && return 0
  if [[ -n $P_PASS ]]; then
    psql_at "$P_SUPER_URL" -v role="$P_USER" -v pw="$P_PASS" <<<"CREATE ROLE :\"role\" LOGIN CREATEDB PASSWORD :'pw'"
  else
    psql_at "$P_SUPER_URL" -v role="$P_USER" <<<"CREATE ROLE :\"role\" LOGIN CREATEDB"
  fi
  P_NOTES+="; created role $P_USER"
}

pg_ensure_database() {
  local ours=$1 exists
  have psql || die "postgres: psql is needed to create database $P_DB. Install it: sudo apt-get install postgresql-client (Debian/Ubuntu), brew install libpq (macOS)"
  if ! exists=$(psql_at "$P_MAINT_URL" -v db="$P_DB" <<<"SELECT 1 FROM pg_database WHERE datname = :'db'" 2>&1); then
    die "postgres: server answers but $P_USER cannot connect to database postgres: $exists"
  fi
  [[ $exists == 1 ]] && return 0
  if [[ $ours == yes ]]; then
    psql_at "$P_SUPER_URL" -v db="$P_DB" -v owner="$P_USER" <<<"CREATE DATABASE :\"db\" OWNER :\"owner\"" ||
      die "postgres: could not create database $P_DB"
  elif ! psql_at "$P_MAINT_URL" -v db="$P_DB" <<<"CREATE DATABASE :\"db\""; then
    die "postgres: $P_USER may not create database $P_DB; ask an administrator for: CREATE DATABASE \"$P_DB\" OWNER \"$P_USER\""
  fi
  P_NOTES+="; created database $P_DB"
}

pg_cluster_start() {
  local bin version sock listen out
  PG_USER_RUN=$(pg_run_user)
  pg_pick_dir
  if [[ -f $PG_DATA/PG_VERSION ]]; then
    PG_USER_RUN=$(pg_run_user "$PG_DATA")
    version=$(cat "$PG_DATA/PG_VERSION")
    bin=$(pg_find_bin "$version") ||
      die "postgres: the cluster in $(show_path "$PG_DATA") is PostgreSQL $version, whose initdb/pg_ctl are not installed"
  else
    bin=$(pg_find_bin) || die "postgres: initdb/pg_ctl not found"
    mkdir -p "$PG_DATA"
    if [[ -n $PG_USER_RUN ]]; then chown "$PG_USER_RUN" "$PG_DATA"; fi
    chmod 700 "$PG_DATA"
    if ! out=$(pg_run "$bin/initdb" -D "$PG_DATA" -A trust -U postgres -E UTF8 --no-locale 2>&1); then
      warn "$out"
      die "postgres: initdb failed in $(show_path "$PG_DATA")"
    fi
    P_NOTES+="; new cluster"
  fi
  [[ $PG_DATA != *"'"* ]] || die "postgres: a quote in the path $PG_DATA cannot be passed to pg_ctl"
  # A unix socket path must stay under ~100 bytes; a deep checkout gets a short directory in /tmp.
  sock=$PG_DATA
  if ((${#sock} > 80)); then
    sock=/tmp/teleread-pg-sock-$(printf '%s' "$PG_DATA" | cksum | cut -d' ' -f1)
    mkdir -p "$sock"
    if [[ -n $PG_USER_RUN ]]; then chown "$PG_USER_RUN" "$sock"; fi
    chmod 700 "$sock"
  fi
  listen=$(listen_address "$P_HOST")
  if ! out=$(pg_run "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/log" -w -t 30 \
    -o "-p $P_PORT -k '$sock' -c listen_addresses='$listen'" start 2>&1); then
    warn "$out"
    warn "postgres: pg_ctl start failed; last lines of $(show_path "$PG_DATA/log"):"
    tail -n 15 "$PG_DATA/log" >&2 2>/dev/null || true
    exit 1
  fi
  return 0
}

pg_start() {
  local url dir pid rc=0
  P_NOTES=''
  pg_parse
  url=$(redact "$DATABASE_URL")
  pg_probe || rc=$?
  if ((rc == 1)); then
    pg_wait || die "postgres: the server at $url keeps rejecting connections (starting up or shutting down?)"
    rc=0
  fi
  if ((rc == 0)); then
    if dir=$(pg_our_dir_running "$P_PORT"); then
      pid=$(pg_our_pid "$dir")
      pg_ensure_role
      pg_ensure_database yes
      say "postgres: answering at $url (started by teleread, pid $pid, data in $(show_path "$dir")$P_NOTES)"
    else
      pg_ensure_database no
      say "postgres: answering at $url (already running$P_NOTES)"
    fi
    return 0
  fi
  is_loopback "$P_HOST" ||
    die "postgres: nothing answers at $url. Only loopback servers are started here: start that one, or fix DATABASE_URL."
  if dir=$(pg_our_dir_running ""); then
    die "postgres: teleread's own cluster in $(show_path "$dir") runs but not at $url (another port?). Run: scripts/services.sh stop"
  fi
  if ! pg_find_bin >/dev/null; then
    is_debian_root || missing_tool postgres "$DATABASE_URL" "initdb/pg_ctl (PostgreSQL server)" postgresql postgresql@16
    apt_install postgres postgresql
    # As with Redis, the package may start the system cluster, possibly at this URL.
    if pg_probe; then
      pg_ensure_database no
      say "postgres: answering at $url (installed by apt-get, which started the system cluster$P_NOTES)"
      return 0
    fi
  fi
  pg_cluster_start
  pg_wait || die "postgres: started a cluster in $(show_path "$PG_DATA") but nothing answers at $url"
  pg_ensure_role
  pg_ensure_database yes
  pid=$(pg_our_pid "$PG_DATA") || pid='?'
  say "postgres: answering at $url (started by teleread, pid $pid, data in $(show_path "$PG_DATA")$P_NOTES$PG_DIR_NOTE)"
}

pg_status() {
  local url dir pid
  pg_parse
  url=$(redact "$DATABASE_URL")
  if pg_probe; then
    if dir=$(pg_our_dir_running "$P_PORT"); then
      pid=$(pg_our_pid "$dir")
      say "postgres: answering at $url (started by teleread, pid $pid, data in $(show_path "$dir"))"
    else
      say "postgres: answering at $url (not started by teleread)"
    fi
    return 0
  fi
  if dir=$(pg_our_dir_running ""); then
    say "postgres: NOT answering at $url; teleread's cluster in $(show_path "$dir") runs on port $(sed -n 4p "$dir/postmaster.pid")"
  else
    say "postgres: NOT answering at $url"
  fi
  return 1
}

pg_stop() {
  local d pid bin out stopped=no
  for d in "$PG_PRIMARY_DIR" "$PG_FALLBACK_DIR"; do
    [[ -f $d/PG_VERSION ]] || continue
    if ! pid=$(pg_our_pid "$d" ""); then
      say "postgres: teleread's cluster in $(show_path "$d") is not running"
      stopped=yes
      continue
    fi
    PG_USER_RUN=$(pg_run_user "$d")
    bin=$(pg_find_bin "$(cat "$d/PG_VERSION")") ||
      die "postgres: pg_ctl for PostgreSQL $(cat "$d/PG_VERSION") not found; stop pid $pid yourself"
    # pg_ctl -D signals only the postmaster recorded in this data directory.
    if ! out=$(pg_run "$bin/pg_ctl" -D "$d" -m fast -w -t 30 stop 2>&1); then
      die "postgres: pg_ctl stop failed: $out"
    fi
    say "postgres: stopped teleread's cluster (pid $pid, data kept in $(show_path "$d"))"
    stopped=yes
  done
  if [[ $stopped == no ]]; then say "postgres: nothing started by teleread; left alone"; fi
}

# ---------------------------------------------------------------- main

main() {
  local cmd=${1:-start} rc=0
  case $cmd in
  start)
    redis_start
    pg_start
    ;;
  status)
    redis_status || rc=1
    pg_status || rc=1
    return "$rc"
    ;;
  stop)
    redis_stop
    pg_stop
    ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
  esac
}

main "$@"
