#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback, for the integrations' tests and benchmarks.
#
#   eval "$(bash Integrations/Scripts/postgres-server.sh start)"   # prints the KEEL_POSTGRES_* exports
#   bash Integrations/Scripts/postgres-server.sh stop
#
# `start` installs Debian's `postgresql` package where it is missing (as root, or through sudo),
# makes a new data directory under /tmp (owned by the `postgres` user, trust authentication on
# 127.0.0.1 only), starts the server on PORT (default 54329) and creates the database `keel`. It
# prints, on standard output and nothing else there, the variables the tests read:
#
#   KEEL_POSTGRES_HOST, KEEL_POSTGRES_PORT, KEEL_POSTGRES_USER, KEEL_POSTGRES_DATABASE: where to connect;
#   KEEL_POSTGRES_RESTART: a command that restarts the server (the store's reconnect test runs it);
#   KEEL_POSTGRES_REQUIRED=1: the tests fail, instead of skipping, when they cannot connect.
#
# `stop` stops the server and removes its data directory. The state between the two lives in
# /tmp/keel-postgres-$PORT.
set -euo pipefail

PORT=${PORT:-54329}
STATE=/tmp/keel-postgres-$PORT
ACTION=${1:-}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

bin_dir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [[ -z "$dir" ]]; then
        echo "installing postgresql with apt-get" >&2
        as_root apt-get update -qq >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
        dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    fi
    echo "$dir"
}

as_postgres() {
    if [[ $(id -un) == postgres ]]; then "$@"; else as_root runuser -u postgres -- "$@"; fi
}

case "$ACTION" in
start)
    BIN=$(bin_dir)
    if [[ -d "$STATE" ]]; then
        as_postgres "$BIN/pg_ctl" -D "$STATE/data" -m immediate stop >/dev/null 2>&1 || true
        as_root rm -rf "$STATE"
    fi
    as_root mkdir -p "$STATE"
    as_root chown postgres: "$STATE"
    as_postgres "$BIN/initdb" -D "$STATE/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >&2
    cat <<CONF | as_postgres tee -a "$STATE/data/postgresql.conf" >/dev/null
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$STATE'
max_connections = 200
shared_buffers = 256MB
CONF
    as_postgres "$BIN/pg_ctl" -D "$STATE/data" -l "$STATE/server.log" -w -t 60 start >&2
    as_postgres "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres keel >&2
    restart="$(printf '%q ' bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/postgres-server.sh" restart)"
    cat <<ENV
export KEEL_POSTGRES_HOST=127.0.0.1
export KEEL_POSTGRES_PORT=$PORT
export KEEL_POSTGRES_USER=postgres
export KEEL_POSTGRES_DATABASE=keel
export KEEL_POSTGRES_RESTART='PORT=$PORT $restart'
export KEEL_POSTGRES_REQUIRED=1
ENV
    ;;
restart)
    BIN=$(bin_dir)
    as_postgres "$BIN/pg_ctl" -D "$STATE/data" -l "$STATE/server.log" -m fast -w -t 60 restart >&2
    ;;
stop)
    if [[ -d "$STATE" ]]; then
        BIN=$(bin_dir)
        as_postgres "$BIN/pg_ctl" -D "$STATE/data" -m fast -w stop >&2 || true
        as_root rm -rf "$STATE"
    fi
    ;;
*)
    echo "usage: $0 start|restart|stop" >&2
    exit 2
    ;;
esac
