#!/usr/bin/env bash
# Starts/stops a throwaway PostgreSQL 15 cluster (port 55432), redis-server (port 56379)
# and a TLS-only redis-server (tls-port 56380, no plain port) on loopback for the
# service tests. The TLS one serves a certificate from a throwaway CA made here with
# openssl (<state>/tls: ca.crt, server.crt naming 127.0.0.1 and localhost only, and
# other-ca.crt, a CA that did not sign it); it listens on 127.0.0.1 and 127.0.0.2, so a
# client that does not check the host name is caught on 127.0.0.2.
# Idempotent: `start` leaves running ones alone.
# As root the cluster runs as the `postgres` user (initdb refuses root).
set -euo pipefail
action="${1:-}"
state_dir="${TEST_SERVICES_DIR:-/tmp/schema-registry-test-services}"
pg_port="${TEST_PG_PORT:-55432}"
redis_port="${TEST_REDIS_PORT:-56379}"
redis_tls_port="${TEST_REDIS_TLS_PORT:-56380}"
pg_bin="${PG_BIN:-/usr/lib/postgresql/15/bin}"
pg_data="${state_dir}/pg"
redis_dir="${state_dir}/redis"
redis_tls_dir="${state_dir}/redis-tls"
tls_dir="${state_dir}/tls"

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

redis_tls_running() {
    redis-cli --tls --cacert "${tls_dir}/ca.crt" -p "${redis_tls_port}" ping >/dev/null 2>&1
}

# A throwaway CA, a server certificate from it, and a second CA that signed nothing.
make_tls() {
    [[ -s "${tls_dir}/server.crt" ]] && return 0
    mkdir -p "${tls_dir}"
    (
        cd "${tls_dir}"
        umask 077
        for ca in ca other-ca; do
            openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=test ${ca}" \
                -keyout "${ca}.key" -out "${ca}.crt" 2>/dev/null
        done
        openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
            -keyout server.key -out server.csr 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
            -extfile server.ext -out server.crt 2>/dev/null
        chmod 0644 ca.crt other-ca.crt server.crt
    )
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
    make_tls
    if ! redis_tls_running; then
        mkdir -p "${redis_tls_dir}"
        redis-server --port 0 --tls-port "${redis_tls_port}" --bind 127.0.0.1 127.0.0.2 \
            --tls-cert-file "${tls_dir}/server.crt" --tls-key-file "${tls_dir}/server.key" \
            --tls-ca-cert-file "${tls_dir}/ca.crt" --tls-auth-clients no \
            --tls-protocols "TLSv1.2 TLSv1.3" --daemonize yes \
            --dir "${redis_tls_dir}" --pidfile "${redis_tls_dir}/redis.pid" \
            --logfile "${redis_tls_dir}/redis.log" --save "" --appendonly no
        for _ in $(seq 50); do redis_tls_running && break; sleep 0.1; done
    fi
    echo "postgresql://postgres@127.0.0.1:${pg_port}/postgres"
    echo "redis://127.0.0.1:${redis_port}/0"
    echo "rediss://127.0.0.1:${redis_tls_port}/0 (CA ${tls_dir}/ca.crt)"
}

stop() {
    if pg_running; then
        as_pg_user "${pg_bin}/pg_ctl" -D "${pg_data}" -m fast -w stop >/dev/null
    fi
    if redis_running; then
        redis-cli -p "${redis_port}" shutdown nosave >/dev/null 2>&1 || true
    fi
    if redis_tls_running; then
        redis-cli --tls --cacert "${tls_dir}/ca.crt" -p "${redis_tls_port}" shutdown nosave \
            >/dev/null 2>&1 || true
    fi
    echo "test services stopped"
}

case "${action}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
