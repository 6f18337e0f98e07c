"""End state of the ha_edge lab and what the fault drills (side_effect: the benchmark
script benchmarks/edge_failover_bench.py) saw: one Redis master with every other
cache host replicating from it, every Sentinel naming that master, exactly one lb host
holding the virtual address, and the drill figures held to the issue's promises."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

testinfra_hosts = ["cache", "lb", "registry"]

DRILLS = (
    Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "drills" / "drills.json"
)


def _vars(host) -> dict:
    return host.ansible.get_variables()


def _address(host) -> str:
    return host.ansible("setup", "gather_subset=network")["ansible_facts"]["ansible_default_ipv4"][
        "address"
    ]


def _redis(host, *command: str, sentinel: bool = False) -> str:
    v = _vars(host)
    # llmops-redis-cli: the redis role's redis-cli with the port and TLS options.
    if sentinel:
        env = f"REDISCLI_AUTH={v['vault_redis_sentinel_password']}"
        argv = "llmops-redis-cli --sentinel"
    else:
        env = f"REDISCLI_AUTH={v['vault_redis_exporter_password']}"
        argv = "llmops-redis-cli --user exporter"
    out = host.run(f"env {env} {argv} --no-auth-warning {' '.join(command)}")
    assert out.rc == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def drills() -> dict:
    if not DRILLS.exists():
        pytest.fail(f"no drill results at {DRILLS}: side_effect did not run")
    return json.loads(DRILLS.read_text())


def test_every_sentinel_names_one_master_that_is_a_master(host) -> None:
    if "cache" not in _vars(host)["group_names"]:
        pytest.skip("cache hosts only")
    master = _redis(host, "SENTINEL", "get-master-addr-by-name", "registry", sentinel=True).split()
    assert len(master) == 2 and master[1] == "6379"
    info = _redis(host, "INFO", "replication")
    if master[0] == _address(host):
        assert "role:master" in info
        assert "connected_slaves:2" in info
    else:
        assert "role:slave" in info
        assert f"master_host:{master[0]}" in info
        assert "master_link_status:up" in info


def test_sentinel_sees_two_replicas_and_two_other_sentinels(host) -> None:
    if "cache" not in _vars(host)["group_names"]:
        pytest.skip("cache hosts only")
    master = _redis(host, "SENTINEL", "master", "registry", sentinel=True).split("\n")
    fields = dict(zip(master[::2], master[1::2], strict=False))
    assert fields["num-slaves"] == "2"
    assert fields["num-other-sentinels"] == "2"
    assert fields["quorum"] == "2"
    assert fields["down-after-milliseconds"] == "3000"


def test_redis_and_sentinel_speak_tls_only(host) -> None:
    """No plain-text port on either (port 0); replication and Sentinel's links to Redis
    run over TLS yet are up; the internal CA verifies both, another CA does not."""
    if "cache" not in _vars(host)["group_names"]:
        pytest.skip("cache hosts only")
    assert _redis(host, "CONFIG", "GET", "port").split() == ["port", "0"]
    assert _redis(host, "CONFIG", "GET", "tls-port").split() == ["tls-port", "6379"]
    assert _redis(host, "CONFIG", "GET", "tls-replication").split() == ["tls-replication", "yes"]
    for port in (6379, 26379):
        plain = host.run(f"redis-cli -p {port} PING")
        assert "PONG" not in plain.stdout and "NOAUTH" not in plain.stdout, port
        host.run(
            "test -s /tmp/wrong-ca.crt || openssl req -x509 -newkey rsa:2048 -nodes -days 1"
            " -subj /CN=wrong-ca -keyout /tmp/wrong-ca.key -out /tmp/wrong-ca.crt"
        )
        wrong = host.run(f"redis-cli --tls --cacert /tmp/wrong-ca.crt -p {port} PING")
        assert "certificate verify failed" in wrong.stdout + wrong.stderr, port
    info = _redis(host, "INFO", "replication")
    if "role:slave" in info:
        assert "master_link_status:up" in info  # over TLS: there is no other port
    sentinel_conf = host.file("/etc/redis/sentinel.conf").content_string.splitlines()
    assert {"port 0", "tls-port 26379", "tls-replication yes"} <= set(sentinel_conf)
    # Sentinel reaches the master and every replica (over TLS): no down or disconnected flag.
    master = _redis(host, "SENTINEL", "master", "registry", sentinel=True).split("\n")
    assert dict(zip(master[::2], master[1::2], strict=False))["flags"] == "master"
    replicas = _redis(host, "SENTINEL", "replicas", "registry", sentinel=True).split("\n")
    flags = [v for k, v in zip(replicas[::2], replicas[1::2], strict=False) if k == "flags"]
    assert flags == ["slave", "slave"], replicas


def test_redis_conf_stays_the_roles_file(host) -> None:
    """No replicaof in redis.conf (replication is Sentinel's runtime state) and Redis
    cannot rewrite it: even after the failover drill it is the role's file."""
    if "cache" not in _vars(host)["group_names"]:
        pytest.skip("cache hosts only")
    conf = host.file("/etc/redis/redis.conf")
    assert conf.user == "root" and conf.group == "redis" and conf.mode == 0o640
    lines = conf.content_string.splitlines()
    assert not [line for line in lines if line.startswith(("replicaof", "slaveof"))]
    assert "# Generated by CONFIG REWRITE" not in conf.content_string
    assert "masteruser replication" in conf.content_string
    assert host.file("/etc/redis/sentinel.conf").contains(
        "llmops.registry.redis: Sentinel bootstrap file"
    )


def test_exactly_one_lb_host_holds_the_virtual_address(host) -> None:
    if "lb" not in _vars(host)["group_names"]:
        pytest.skip("lb hosts only")
    vip = ".".join([*_address(host).split(".")[:3], "200"])
    holders = 0
    for name in ("lb1", "lb2"):
        other = host.get_host(f"ansible://{name}", ansible_inventory=host.backend.ansible_inventory)
        holders += f" {vip}/" in other.check_output("ip -o -4 addr show")
    assert holders == 1
    state = host.file("/var/lib/node_exporter/textfile/keepalived_registry.prom").content_string
    assert 'keepalived_vrrp_state{instance_name="registry"}' in state
    assert host.service("keepalived").is_running


def test_redis_drill_promoted_a_replica_with_no_failed_read(drills) -> None:
    r = drills["redis_master_kill"]
    assert r["new_master"] and r["new_master"] != r["old_master"]
    assert r["redis_failover_seconds"] is not None
    assert r["load"]["requests"] > 100
    assert r["load"]["failed_reads"] == 0, r["load"]["failures"][:5]


def test_redis_drill_old_master_rejoined_as_replica(drills) -> None:
    r = drills["redis_master_kill"]
    assert r["rejoined_as_replica"]
    assert sorted(r["roles_after_rejoin"].values()) == ["master", "slave", "slave"]


def test_redis_drill_deploy_rerun_changed_nothing_and_kept_the_master(drills) -> None:
    rerun = drills["redis_master_kill"]["deploy_rerun"]
    assert rerun["rc"] == 0
    assert rerun["changed"] == []
    assert drills["redis_master_kill"]["masters_after_rerun"] == [
        drills["redis_master_kill"]["new_master"]
    ]


def test_lb_drill_moved_the_address_without_flapping_back(drills) -> None:
    lb = drills["lb_holder_kill"]
    assert lb["new_holder"] and lb["new_holder"] != lb["killed_host"]
    assert lb["vip_move_seconds"] is not None
    assert lb["vip_serving_seconds"] is not None
    assert lb["old_holder_back_as_backup"]
    assert not lb["flapped_back"]
    assert not lb["two_holders_seen"]
    assert lb["vip_answered_during_watch"]
    assert (
        lb["holder_master_transitions_after_watch"] == lb["holder_master_transitions_before_boot"]
    )


def test_lb_drill_failed_requests_are_bounded(drills) -> None:
    """Requests in flight on the dead host's connections are lost (nothing answers
    them; the new holder resets them once the address moved): at most a few per load
    worker (4), never the whole move window's traffic."""
    load = drills["lb_holder_kill"]["load"]
    assert load["requests"] > 100
    assert load["failed"] <= 12, load["failures"][:12]


def test_sentinel_aware_registry_follows_the_new_master(host, drills) -> None:
    """Runs once the service side (Sentinel discovery, redis.sentinels in the config)
    is merged; until then the registry talks to the first cache host only."""
    if "registry" not in _vars(host)["group_names"]:
        pytest.skip("registry hosts only")
    config = host.file("/etc/schema-registry/config.yml").content_string
    if "sentinel" not in config:
        pytest.skip("this registry release does not discover Redis through Sentinel yet")
    statuses = drills["redis_master_kill"]["registry_redis_status_after_failover"]
    assert set(statuses.values()) == {"up"}, statuses
    assert drills["redis_master_kill"]["load"]["failed_writes"] == 0
