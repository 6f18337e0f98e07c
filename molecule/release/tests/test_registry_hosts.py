"""Registry hosts after the release story: hardened instances back on 1.0.0."""

import json
import re

testinfra_hosts = ["registry"]

FINAL_VERSION = "1.0.0"
INSTANCES = {"a": 8081, "b": 8082}


def test_service_user_is_a_system_user_without_a_shell(host):
    user = host.user("schema-registry")
    assert user.exists
    assert user.uid < 1000
    assert user.shell == "/usr/sbin/nologin"


def test_both_instances_run_as_the_service_user(host):
    for name in INSTANCES:
        unit = host.service(f"schema-registry@{name}")
        assert unit.is_running and unit.is_enabled
        pid = host.check_output(f"systemctl show -p MainPID --value schema-registry@{name}")
        owner = host.check_output(f"ps -o user= -p {pid}")
        assert owner.strip() == "schema-registry"


def test_hardening_exposure_is_at_most_2(host):
    for name in INSTANCES:
        out = host.check_output(
            f"systemd-analyze security --no-pager schema-registry@{name}.service"
        )
        score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
        assert score <= 2.0, out[-400:]


def test_instances_are_pinned_to_the_final_release_and_serve_it(host):
    for name, port in INSTANCES.items():
        env = host.file(f"/etc/schema-registry/instance-{name}.env").content_string
        assert f"SCHEMA_REGISTRY_RELEASE=/opt/schema-registry/releases/{FINAL_VERSION}\n" in env
        health = json.loads(host.check_output(f"curl -fsS http://127.0.0.1:{port}/health"))
        assert health["version"] == FINAL_VERSION


def test_current_points_at_a_complete_release(host):
    link = host.file("/opt/schema-registry/current")
    assert link.is_symlink
    assert link.linked_to == f"/opt/schema-registry/releases/{FINAL_VERSION}"
    assert not host.file(f"/opt/schema-registry/releases/{FINAL_VERSION}/.unfinished").exists
    meta = json.loads(
        host.file(f"/opt/schema-registry/releases/{FINAL_VERSION}/release.json").content_string
    )
    assert meta["version"] == FINAL_VERSION and meta["checksum"].startswith("sha256:")


def test_config_is_readable_only_by_root_and_the_service_group(host):
    config = host.file("/etc/schema-registry/config.yml")
    assert config.user == "root" and config.group == "schema-registry"
    assert config.mode == 0o640
    # API keys are stored as hashes only.
    assert "molecule-rel-api-key" not in config.content_string


def test_nothing_left_behind_and_the_rolled_back_release_kept(host):
    # 2.0.0 was rolled back from, then deploy.yml ran: it must still be there (issue 18).
    releases = host.check_output("ls -A /opt/schema-registry/releases").split()
    assert "2.0.0" in releases and "1.0.0" in releases, releases
    assert not [name for name in releases if name.startswith(".")], releases
    unfinished = host.run("find /opt/schema-registry/releases -maxdepth 2 -name .unfinished")
    assert unfinished.stdout.strip() == "", unfinished.stdout
    # no run lock left once every run ended
    assert not host.file("/opt/schema-registry/run-lock.json").exists
    # only artifacts of releases that are still installed stay in the cache
    cached = host.check_output("ls -A /var/cache/schema-registry").split()
    versions = {
        m.group(1) for name in cached if (m := re.match(r"schema-registry-(.+)\.tar\.gz$", name))
    }
    assert versions <= set(releases), (cached, releases)


def test_no_release_smoke_subject_is_listed(host):
    # The gate's probe schemas are deleted permanently after each gate (issue 18).
    listing = json.loads(host.check_output("curl -fsS http://127.0.0.1:8081/api/v1/subjects"))
    smoke = [s for s in listing["subjects"] if s.startswith("release.smoke")]
    assert smoke == [], smoke
