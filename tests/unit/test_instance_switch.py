"""The instance_switch module and its module_utils, on temp folders.

The instances are real HTTP servers on loopback that answer /ready like the service
(status and version in JSON). systemd does not run on the build machine, so the restart
is a stand-in that does what systemd does for our units: the instance comes back
serving the release its env file pins (after a few not-ready answers). The Molecule
release scenario runs the real systemctl against real units.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_release_lib import (
    ReleaseError,
    SwitchError,
    current_target,
    release_of,
    run_module,
    snapshot,
    switch_host,
    switch_instances,
)

OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


class FakeInstance:
    """A loopback HTTP server answering /ready with a version, like the service."""

    def __init__(self, version: str | None) -> None:
        self.version = version
        self.not_ready_polls = 0
        self.polls = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.polls += 1
                if owner.version is None:
                    self.send_response(502)
                    self.end_headers()
                    return
                ready = owner.not_ready_polls <= 0
                owner.not_ready_polls -= 1
                body = json.dumps(
                    {"status": "ready" if ready else "not_ready", "version": owner.version}
                ).encode()
                self.send_response(200 if ready else 503)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeSystemd:
    """Restarts fake instances: each comes back on the release its env file pins."""

    def __init__(self, config_dir: Path, instances: dict[str, FakeInstance]) -> None:
        self.config_dir = config_dir
        self.instances = instances
        self.calls: list[list[str]] = []
        self.not_ready_polls = 2

    def restart(self, units: list[str]) -> None:
        self.calls.append(list(units))
        for unit in units:
            name = unit.removeprefix("schema-registry@").removesuffix(".service")
            env = (self.config_dir / f"instance-{name}.env").read_text()
            release = release_of(env)
            inst = self.instances[name]
            inst.version = os.path.basename(release)
            inst.not_ready_polls = self.not_ready_polls


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Release folders (2.0.0 and 1.0.0 complete, 3.0.0 unfinished) and a config dir."""
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        folder = tmp_path / "releases" / version
        folder.mkdir(parents=True)
        (folder / "release.json").write_text(json.dumps({"version": version}))
    (tmp_path / "releases/3.0.0/.unfinished").touch()
    (tmp_path / "etc").mkdir()
    return tmp_path


@pytest.fixture
def fakes(root: Path) -> Iterator[dict[str, FakeInstance]]:
    instances = {"a": FakeInstance("1.0.0"), "b": FakeInstance("1.0.0")}
    yield instances
    for inst in instances.values():
        inst.close()


@pytest.fixture
def systemd(root: Path, fakes: dict[str, FakeInstance]) -> FakeSystemd:
    return FakeSystemd(root / "etc", fakes)


def env_text(root: Path, version: str, port: int) -> str:
    return (
        "# Ansible managed\n"
        f"SCHEMA_REGISTRY_RELEASE={root}/releases/{version}\n"
        f"SERVER_PORT={port}\n"
    )


def specs(root: Path, fakes: dict[str, FakeInstance], version: str) -> list[dict]:
    return [
        {"name": name, "port": inst.port, "env": env_text(root, version, inst.port)}
        for name, inst in fakes.items()
    ]


def switch(root: Path, fakes, systemd: FakeSystemd, version: str, **kwargs):
    args = {
        "instances": specs(root, fakes, version),
        "version": version,
        "config_dir": str(root / "etc"),
        "owner": OWNER,
        "group": GROUP,
        "timeout": 5.0,
        "interval": 0.02,
        "restart": systemd.restart,
    }
    args.update(kwargs)
    return switch_instances(**args)


def files(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        p.name: (p.read_text(), p.stat().st_mode & 0o7777)
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def test_parallel_switch_pins_both_restarts_them_in_one_call_and_waits(root, fakes, systemd):
    result = switch(root, fakes, systemd, "2.0.0")
    assert result["changed"]
    assert systemd.calls == [["schema-registry@a.service", "schema-registry@b.service"]]
    assert result["restarted"] == ["a", "b"]
    for name, inst in fakes.items():
        env_file = root / "etc" / f"instance-{name}.env"
        assert env_file.read_text() == env_text(root, "2.0.0", inst.port)
        assert env_file.stat().st_mode & 0o7777 == 0o640
        assert inst.version == "2.0.0"
    for item in result["instances"]:
        assert item["served_before"] == "1.0.0"
        assert item["restarted"] and item["env_changed"]
        # Two 503 answers before ready: three polls after the restart at least.
        assert item["polls"] >= 3
        assert 0 < item["ready_seconds"] < 5
    assert result["diff"][0]["before"] == "" and "releases/2.0.0" in result["diff"][0]["after"]


def test_second_run_changes_nothing_and_restarts_nothing(root, fakes, systemd):
    switch(root, fakes, systemd, "2.0.0")
    result = switch(root, fakes, systemd, "2.0.0")
    assert not result["changed"]
    assert result["restarted"] == [] and result["diff"] == []
    assert len(systemd.calls) == 1


def test_pinned_env_but_old_process_is_restarted(root, fakes, systemd):
    # An interrupted run wrote the env files but never restarted: the module finishes it.
    switch(root, fakes, systemd, "2.0.0")
    fakes["b"].version = "1.0.0"
    result = switch(root, fakes, systemd, "2.0.0")
    assert result["changed"] and result["restarted"] == ["b"]
    assert systemd.calls[-1] == ["schema-registry@b.service"]
    assert fakes["b"].version == "2.0.0"


def test_sequential_switch_restarts_one_instance_after_the_other_is_ready(root, fakes, systemd):
    seen_when_b_restarts = {}
    restart = systemd.restart

    def recording_restart(units: list[str]) -> None:
        if units == ["schema-registry@b.service"]:
            seen_when_b_restarts.update(version=fakes["a"].version, left=fakes["a"].not_ready_polls)
        restart(units)

    result = switch(root, fakes, systemd, "2.0.0", parallel=False, restart=recording_restart)
    assert systemd.calls == [["schema-registry@a.service"], ["schema-registry@b.service"]]
    # a already served 2.0.0 and was ready (no not-ready answers left) before b went down.
    assert seen_when_b_restarts == {"version": "2.0.0", "left": -1}
    assert result["restarted"] == ["a", "b"]


def test_check_mode_reports_the_change_and_touches_nothing(root, fakes, systemd):
    before = files(root / "etc")
    result = switch(root, fakes, systemd, "2.0.0", check_mode=True)
    assert result["changed"] and result["restarted"] == ["a", "b"]
    assert "releases/2.0.0" in result["diff"][1]["after"]
    assert files(root / "etc") == before
    assert systemd.calls == []
    assert fakes["a"].version == "1.0.0"


def test_check_mode_after_a_switch_reports_no_change(root, fakes, systemd):
    switch(root, fakes, systemd, "2.0.0")
    result = switch(root, fakes, systemd, "2.0.0", check_mode=True)
    assert not result["changed"] and result["restarted"] == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda specs, root: specs[0].update(env=env_text(root, "1.0.0", 1)), "not release 2.0.0"),
        (lambda specs, root: specs[0].update(env="SERVER_PORT=1\n"), "no SCHEMA_REGISTRY_RELEASE"),
        (lambda specs, root: specs[1].update(port=specs[0]["port"]), "share a port"),
        (lambda specs, root: specs[1].update(name="a"), "share a name"),
        (lambda specs, root: specs[0].update(name="../x"), "invalid instance name"),
        (lambda specs, root: specs[0].update(port=70000), "invalid port"),
        (lambda specs, root: specs.clear(), "instances is empty"),
    ],
)
def test_bad_instances_are_refused_before_anything_changes(root, fakes, systemd, change, message):
    switch(root, fakes, systemd, "1.0.0")
    before = files(root / "etc")
    instances = specs(root, fakes, "2.0.0")
    change(instances, root)
    with pytest.raises(SwitchError, match=message):
        switch(root, fakes, systemd, "2.0.0", instances=instances)
    assert files(root / "etc") == before
    assert len(systemd.calls) == 1


def test_unfinished_and_missing_releases_are_refused(root, fakes, systemd):
    with pytest.raises(SwitchError, match="unfinished"):
        switch(root, fakes, systemd, "3.0.0")
    with pytest.raises(SwitchError, match="does not exist"):
        switch(root, fakes, systemd, "4.0.0")
    with pytest.raises(SwitchError, match="invalid version"):
        switch(root, fakes, systemd, "v4")
    with pytest.raises(SwitchError, match="group 'no-such-group-x'"):
        switch(root, fakes, systemd, "2.0.0", group="no-such-group-x")
    assert list((root / "etc").iterdir()) == []
    assert systemd.calls == []


def test_instance_that_never_gets_ready_fails_naming_it_and_what_it_saw(root, fakes, systemd):
    systemd.not_ready_polls = 10_000
    with pytest.raises(SwitchError) as caught:
        switch(root, fakes, systemd, "2.0.0", timeout=0.5)
    message = str(caught.value)
    assert "schema-registry@a.service" in message and f"port {fakes['a'].port}" in message
    assert "HTTP 503" in message and "not_ready" in message
    assert caught.value.result["restarted"] == ["a", "b"]


def test_instance_that_does_not_answer_fails_with_the_connection_error(root, fakes, systemd):
    instances = specs(root, fakes, "2.0.0")
    fakes["b"].close()
    with pytest.raises(SwitchError, match=r"schema-registry@b.service .*no answer"):
        switch(root, fakes, systemd, "2.0.0", instances=instances, timeout=0.5)


def test_module_check_mode_with_diff_through_ansible_json_args(root, fakes):
    result = run_module(
        "instance_switch",
        {
            "instances": specs(root, fakes, "2.0.0"),
            "version": "2.0.0",
            "config_dir": str(root / "etc"),
            "owner": OWNER,
            "group": GROUP,
        },
        check_mode=True,
    )
    assert result["changed"], result
    assert result["restarted"] == ["a", "b"]
    assert [d["before_header"] for d in result["diff"]] == [
        f"{root}/etc/instance-a.env (before)",
        f"{root}/etc/instance-b.env (before)",
    ]
    assert list((root / "etc").iterdir()) == []


def test_module_refuses_a_bad_mode_and_a_wrong_release(root, fakes):
    args = {
        "instances": specs(root, fakes, "2.0.0"),
        "version": "2.0.0",
        "config_dir": str(root / "etc"),
        "owner": OWNER,
        "group": GROUP,
    }
    result = run_module("instance_switch", dict(args, mode="rw-r"))
    assert result["failed"] and "not an octal number" in result["msg"]
    result = run_module("instance_switch", dict(args, version="1.0.0"))
    assert result["failed"] and "not release 1.0.0" in result["msg"]
    assert list((root / "etc").iterdir()) == []


# ---- point_current: the release tree's `current` follows in the same call (rollback)


@pytest.fixture
def host_on_1_1_0(root: Path, tree: Path, fakes: dict[str, FakeInstance]) -> FakeSystemd:
    """A real release tree (1.0.0 then 1.1.0 released) whose instances serve 1.1.0."""
    for inst in fakes.values():
        inst.version = "1.1.0"
    return FakeSystemd(root / "etc", fakes)


def host_args(tree: Path, fakes, systemd: FakeSystemd, root: Path, version: str) -> dict:
    return {
        "instances": specs(tree, fakes, version),
        "version": version,
        "config_dir": str(root / "etc"),
        "owner": OWNER,
        "group": GROUP,
        "timeout": 5.0,
        "interval": 0.02,
        "restart": systemd.restart,
    }


def test_point_current_rolls_current_back_once_the_instances_serve_it(
    root, tree, fakes, host_on_1_1_0
):
    args = host_args(tree, fakes, host_on_1_1_0, root, "1.0.0")
    result = switch_host(point_current=str(tree), **args)
    assert result["changed"] and result["restarted"] == ["a", "b"]
    assert current_target(tree) == "releases/1.0.0"
    assert result["current"]["rolled_back_from"] == "1.1.0"
    assert result["current"]["active"] == "1.0.0"
    assert fakes["a"].version == fakes["b"].version == "1.0.0"
    # Second run: instances and current already there.
    again = switch_host(point_current=str(tree), **args)
    assert not again["changed"] and not again["current"]["changed"]


def test_point_current_check_mode_changes_neither_files_nor_current(
    root, tree, fakes, host_on_1_1_0
):
    before = snapshot(tree)
    args = host_args(tree, fakes, host_on_1_1_0, root, "1.0.0")
    result = switch_host(point_current=str(tree), check_mode=True, **args)
    assert result["changed"] and result["current"]["version"] == "1.0.0"
    assert snapshot(tree) == before and list((root / "etc").iterdir()) == []
    assert host_on_1_1_0.calls == []


def test_refused_rollback_of_current_changes_nothing(root, tree, fakes, host_on_1_1_0):
    (tree / "current").unlink()
    before = snapshot(tree)
    args = host_args(tree, fakes, host_on_1_1_0, root, "1.0.0")
    with pytest.raises(ReleaseError, match="no active release"):
        switch_host(point_current=str(tree), **args)
    assert snapshot(tree) == before and list((root / "etc").iterdir()) == []
    assert host_on_1_1_0.calls == []
