#!/usr/bin/env bash
# Starts/stops a throwaway PostgreSQL 15 cluster (port 55432) and redis-server (port 56379)
# on loopback for the service tests. Idempotent: `start` leaves running ones alone.
# As root the cluster runs as the `postgres` user (initdb refuses root).
set -euo pipefail
action="${1:-}"
state_dir="${TEST_SERVICES_DIR:-/tmp/schema-registry-test-services}"
pg_port="${TEST_PG_PORT:-55432}"
redis_port="${TEST_REDIS_PORT:-56379}"
pg_bin="${PG_BIN:-/usr/lib/postgresql/15/bin}"
pg_data="${state_dir}/pg"
redis_dir="${state_dir}/redis"

as_pg_user() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_running() {
    [[ -f "${pg_data}/postmaster.pid" ]] && as_pg_user "${pg_bin}/pg_ctl" -D "${pg_data}" status >/dev/null 2>&1
}

redis_running() {
    redis-cli -p "${redis_port}" ping >/dev/null 2>&1
}

start() {
    mkdir -p "${state_dir}" "${redis_dir}"
    if [[ "$(id -u)" == 0 ]]; then
        chmod 0755 "${state_dir}"
        install -d -o postgres -g postgres -m 0700 "${pg_data}"
    else
        install -d -m 0700 "${pg_data}"
    fi
    if [[ ! -f "${pg_data}/PG_VERSION" ]]; then
        as_pg_user "${pg_bin}/initdb" -D "${pg_data}" -U postgres --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    fi
    if ! pg_running; then
        as_pg_user "${pg_bin}/pg_ctl" -D "${pg_data}" -l "${pg_data}/server.log" -w -t 60 \
            -o "-p ${pg_port} -k ${pg_data} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" \
            start >/dev/null
    fi
    if ! redis_running; then
        redis-server --port "${redis_port}" --bind 127.0.0.1 --daemonize yes \
            --dir "${redis_dir}" --pidfile "${redis_dir}/redis.pid" \
            --logfile "${redis_dir}/redis.log" --save "" --appendonly no
        for _ in $(seq 50); do redis_running && break; sleep 0.1; done
    fi
    echo "postgresql://postgres@127.0.0.1:${pg_port}/postgres"
    echo "redis://127.0.0.1:${redis_port}/0"
}

stop() {
    if pg_running; then
        as_pg_user "${pg_bin}/pg_ctl" -D "${pg_data}" -m fast -w stop >/dev/null
    fi
    if redis_running; then
        redis-cli -p "${redis_port}" shutdown nosave >/dev/null 2>&1 || true
    fi
    echo "test services stopped"
}

case "${action}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
