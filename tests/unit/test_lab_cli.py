"""labctl.py's command line: bad input fails clearly and changes nothing; state handling."""

import importlib
import ipaddress
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))

import labctl as labctl_module
import labnet
import labpaths


@pytest.fixture
def labctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """labctl with its whole state under a temporary LLMOPS_LAB_ROOT.

    labpaths reads the variable at import; the other lab modules read labpaths at call
    time, and labctl re-exports its paths, so both are reloaded."""
    monkeypatch.setenv("LLMOPS_LAB_ROOT", str(tmp_path / "root"))
    importlib.reload(labpaths)
    return importlib.reload(labctl_module)


def _root(labctl: ModuleType) -> Path:
    return Path(labctl.LAB_ROOT)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["up", "--lab", "demo", "--host", "Bad_Name"], "bad host name 'Bad_Name'"),
        (["up", "--lab", "demo", "--host", "a", "--host", "a:db"], "'a' is given twice"),
        (["up", "--lab", "demo", "--host", "a:db-x"], "bad group name 'db-x'"),
        (["up", "--lab", "demo", "--host", "a:all"], "reserved"),
        (["up", "--lab", "Demo", "--host", "a"], "bad lab name 'Demo'"),
        (["down", "--lab", "../etc"], "bad lab name '../etc'"),
    ],
)
def test_bad_input_fails_with_a_message_and_creates_nothing(
    labctl: ModuleType, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert labctl.main(argv) == 1
    assert message in capsys.readouterr().err
    assert not _root(labctl).exists()


@pytest.mark.parametrize(
    "argv",
    [["up", "--lab", "demo", "--host", "a"], ["down", "--lab", "demo"], ["base"]],
)
def test_not_root_is_refused_before_anything_changes(
    labctl: ModuleType,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert labctl.main(argv) == 1
    assert "must run as root" in capsys.readouterr().err
    assert not _root(labctl).exists()


def test_down_needs_a_lab_or_all(labctl: ModuleType) -> None:
    with pytest.raises(SystemExit) as exit_info:
        labctl.main(["down"])
    assert exit_info.value.code == 2


def test_up_needs_a_host(labctl: ModuleType) -> None:
    with pytest.raises(SystemExit) as exit_info:
        labctl.main(["up", "--lab", "demo"])
    assert exit_info.value.code == 2


def test_down_of_an_unknown_lab_is_fine(
    labctl: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert labctl.main(["down", "--lab", "nosuchlab"]) == 0
    assert "not up" in capsys.readouterr().err


def test_list_without_labs(labctl: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert labctl.main(["list"]) == 0
    assert capsys.readouterr().out == "no labs\n"


def test_new_lab_skips_indexes_recorded_by_other_labs(
    labctl: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(labnet, "taken_networks", list)
    labctl.save_state({"lab": "first", "index": 1, "hosts": []})
    labctl.save_state({"lab": "second", "index": 2, "hosts": []})
    specs = labctl.parse_host_specs(["a:db", "b"])
    state = labctl.new_state("third", specs, tmp_path / "state")
    assert state["index"] == 3
    assert state["bridge"] == "llmlab3"
    assert state["subnet"] == "10.213.3.0/24"
    assert [h["address"] for h in state["hosts"]] == ["10.213.3.10", "10.213.3.11"]
    # fresh, distinct machine-ids, per-host apt caches keyed by lab and host
    assert len({h["machine_id"] for h in state["hosts"]}) == 2
    assert state["hosts"][1]["apt_cache"].endswith("apt-cache/third/b")


def test_new_lab_skips_subnets_in_use_on_the_machine(
    labctl: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(labnet, "taken_networks", lambda: [ipaddress.IPv4Network("10.213.0.0/23")])
    state = labctl.new_state("demo", labctl.parse_host_specs(["a"]), tmp_path)
    assert state["index"] == 2


def test_state_files_are_written_for_ansible_and_molecule(
    labctl: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(labnet, "taken_networks", list)
    specs = labctl.parse_host_specs(["web1:registry", "db1:db,cache"])
    state = labctl.new_state("demo", specs, tmp_path)
    inventory = labctl.write_state_files(state, specs)
    assert inventory == tmp_path / "inventory.yml"
    data = yaml.safe_load(inventory.read_text())
    assert data["all"]["hosts"]["db1"]["ansible_host"] == "10.213.1.11"
    assert data["all"]["vars"]["ansible_ssh_private_key_file"] == str(tmp_path / "id_ed25519")
    instances = yaml.safe_load((tmp_path / "instance_config.yml").read_text())
    assert [i["instance"] for i in instances] == ["web1", "db1"]
    # specs_of() gives back what `up` was called with: re-running `up` compares them
    assert labctl.specs_of(state) == specs


def test_state_survives_a_round_trip(labctl: ModuleType) -> None:
    labctl.save_state({"lab": "demo", "index": 4, "hosts": [{"name": "a"}]})
    assert labctl.load_state("demo") == {"lab": "demo", "index": 4, "hosts": [{"name": "a"}]}
    assert labctl.load_state("other") is None
    assert [s["lab"] for s in labctl.all_states()] == ["demo"]
    raw = (Path(labctl.RUN_DIR) / "demo" / "state.json").read_text()
    assert json.loads(raw)["index"] == 4


def test_nat_and_forward_rules_are_scoped_to_the_lab(labctl: ModuleType) -> None:
    rules = labctl.iptables_rules({"lab": "demo", "bridge": "llmlab4", "subnet": "10.213.4.0/24"})
    nat = rules[0]
    assert nat[:3] == ["-t", "nat", "POSTROUTING"]
    assert nat[3:10] == ["-s", "10.213.4.0/24", "!", "-o", "llmlab4", "-j", "MASQUERADE"]
    for rule in rules:
        assert rule[-2:] == ["--comment", "llmops-lab:demo"]
    assert {tuple(rule[3:5]) for rule in rules[1:]} == {("-i", "llmlab4"), ("-o", "llmlab4")}


def test_nspawn_boots_systemd_on_an_overlay_with_its_own_network(
    labctl: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(labnet, "taken_networks", list)
    state = labctl.new_state("demo", labctl.parse_host_specs(["a"]), tmp_path)
    host = state["hosts"][0]
    argv = labctl.nspawn_command(state, host)
    base = labctl.BASE_DIR
    for flag in (
        "--boot",
        "--register=no",
        "--keep-unit",
        "--hostname=a",
        f"--overlay={base}:{host['upper']}:/",
        "--network-bridge=llmlab1",
        f"--bind={host['apt_cache']}/archives:/var/cache/apt/archives",
        f"--bind={host['apt_cache']}/lists:/var/lib/apt/lists",
        "--link-journal=no",
    ):
        assert flag in argv


@pytest.mark.parametrize(
    ("stat", "expected"),
    [
        ("42 (systemd-nspawn) S 1 42 42 0 -1 4194560 " + "0 " * 12 + "987654 rest", "987654"),
        ("42 (odd) name) R 1 42 42 0 -1 4194560 " + "0 " * 12 + "555 rest", "555"),
        ("42 (systemd-nspawn) Z 1 42 42 0 -1 4194560 " + "0 " * 12 + "987654 rest", None),
    ],
)
def test_process_start_time_parsing(labctl: ModuleType, stat: str, expected: str | None) -> None:
    assert labctl.parse_start_time(stat) == expected


def test_a_dead_pid_is_not_a_running_host(labctl: ModuleType) -> None:
    assert not labctl.host_alive({"pid": None, "pid_start": None})
    assert not labctl.host_alive({"pid": 2**22 + 1, "pid_start": "1"})


@pytest.mark.parametrize(
    ("rule", "owner"),
    [
        (
            "-A POSTROUTING -s 10.213.9.0/24 ! -o llmlab9 -m comment "
            '--comment "llmops-lab:gone" -j MASQUERADE',
            "gone",
        ),
        ("-A FORWARD -i llmlab9 -m comment --comment llmops-lab:live -j ACCEPT", None),
        ("-A FORWARD -i docker0 -m comment --comment other-tool -j ACCEPT", None),
        ("-A FORWARD -i eth0 -j ACCEPT", None),
        ("-P FORWARD ACCEPT", None),
    ],
)
def test_only_rules_of_labs_that_are_gone_count_as_orphans(
    labctl: ModuleType, rule: str, owner: str | None
) -> None:
    assert labctl.orphan_rule_owner(rule, {"live"}) == owner


def test_kill_and_boot_of_a_lab_that_is_not_up_fail_with_a_message(
    labctl: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert labctl.main(["kill", "--lab", "nosuchlab", "--host", "db1"]) == 1
    assert "lab nosuchlab is not up" in capsys.readouterr().err
    assert labctl.main(["boot", "--lab", "nosuchlab"]) == 1
    assert "lab nosuchlab is not up" in capsys.readouterr().err


def test_an_unknown_host_is_named_with_the_lab_s_hosts(labctl: ModuleType, tmp_path: Path) -> None:
    state = labctl.new_state(
        "demo", labctl.parse_host_specs(["db1:db", "db2:db"]), tmp_path / "state"
    )
    with pytest.raises(labctl.LabError, match="lab demo has no host db9 \\(its hosts: db1, db2\\)"):
        labctl.select_hosts(state, ["db9"])
    assert [h["name"] for h in labctl.select_hosts(state, [])] == ["db1", "db2"]


def test_debs_go_to_the_pool_and_from_it_into_new_hosts(labctl: ModuleType, tmp_path: Path) -> None:
    state = labctl.new_state("demo", labctl.parse_host_specs(["a", "b"]), tmp_path / "state")
    first, second = (Path(h["apt_cache"]) for h in state["hosts"])
    labctl.ensure_apt_cache(first)
    (first / "archives" / "redis_7.0_amd64.deb").write_bytes(b"deb")
    (first / "archives" / "partial" / "half.deb").write_bytes(b"half")
    labctl.collect_debs(state)
    assert sorted(p.name for p in labctl.APT_POOL_DIR.glob("*.deb")) == ["redis_7.0_amd64.deb"]
    labctl.ensure_apt_cache(second)
    assert (second / "archives" / "redis_7.0_amd64.deb").read_bytes() == b"deb"
    assert not (second / "archives" / "half.deb").exists()
