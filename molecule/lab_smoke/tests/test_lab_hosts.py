"""The lab hosts behave like real servers: systemd, networking between hosts, apt."""

import os

import testinfra.host
import yaml

testinfra_hosts = ["smoke"]


def test_systemd_is_pid_1(host: testinfra.host.Host) -> None:
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"


def test_system_is_running(host: testinfra.host.Host) -> None:
    state = host.run("systemctl is-system-running --wait").stdout.strip()
    assert state == "running", host.run("systemctl --failed --no-legend").stdout


def test_connects_as_non_root_and_becomes_root(host: testinfra.host.Host) -> None:
    assert host.user().name == "lab"
    with host.sudo():
        assert host.user().name == "root"


def test_hosts_reach_each_other_by_address(host: testinfra.host.Host) -> None:
    # Addresses from the instance config labctl wrote, not from the host itself.
    with open(os.environ["MOLECULE_INSTANCE_CONFIG"], encoding="utf-8") as handle:
        instances = yaml.safe_load(handle)
    own = set(host.interface("host0").addresses)
    peers = [item["address"] for item in instances if item["address"] not in own]
    assert len(peers) == len(instances) - 1 >= 1
    for address in peers:
        probe = host.run(
            "python3 -c 'import socket, sys; socket.create_connection((sys.argv[1], 22), 3)' %s",
            address,
        )
        assert probe.rc == 0, probe.stderr


def test_package_installed_and_service_running(host: testinfra.host.Host) -> None:
    assert host.package("cron").is_installed
    cron = host.service("cron")
    assert cron.is_running
    assert cron.is_enabled
