"""Pure logic of the lab tool: names, subnets and the files it writes."""

import ipaddress
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))

import labcore
from labcore import HostSpec, LabError

KEY = "/var/lib/llmops-lab/labs/demo/id_ed25519"


# --- argument validation -------------------------------------------------------------


@pytest.mark.parametrize("name", ["demo", "lab_smoke", "multi-host", "a", "x" * 32, "0lab"])
def test_lab_names_that_are_accepted(name: str) -> None:
    assert labcore.validate_lab_name(name) == name


@pytest.mark.parametrize("name", ["", "Demo", "-lab", "_lab", "a b", "a/b", "x" * 33, "lab."])
def test_bad_lab_names_are_refused_with_the_name_in_the_message(name: str) -> None:
    with pytest.raises(LabError, match="bad lab name"):
        labcore.validate_lab_name(name)


def test_host_without_groups() -> None:
    assert labcore.parse_host_spec("db1") == HostSpec("db1", ())


def test_host_with_groups_keeps_their_order() -> None:
    assert labcore.parse_host_spec("aio:registry,db,cache") == HostSpec(
        "aio", ("registry", "db", "cache")
    )


@pytest.mark.parametrize("spec", ["Db1", "db_1", "-db", "db-", "db.1", "", "x" * 33, ":db"])
def test_bad_host_names_are_refused(spec: str) -> None:
    with pytest.raises(LabError, match="bad host name"):
        labcore.parse_host_spec(spec)


@pytest.mark.parametrize("spec", ["db1:Db", "db1:1db", "db1:db-x", "db1:db,", "db1:,db"])
def test_bad_group_names_are_refused(spec: str) -> None:
    with pytest.raises(LabError, match="bad group name"):
        labcore.parse_host_spec(spec)


@pytest.mark.parametrize("group", ["all", "ungrouped"])
def test_reserved_group_names_are_refused(group: str) -> None:
    with pytest.raises(LabError, match="reserved"):
        labcore.parse_host_spec(f"db1:{group}")


def test_group_listed_twice_is_refused() -> None:
    with pytest.raises(LabError, match="twice"):
        labcore.parse_host_spec("db1:db,db")


def test_colon_without_groups_is_refused() -> None:
    with pytest.raises(LabError, match="no groups"):
        labcore.parse_host_spec("db1:")


def test_duplicate_host_names_are_refused() -> None:
    with pytest.raises(LabError, match="'db1' is given twice"):
        labcore.parse_host_specs(["db1:db", "web1", "db1:cache"])


def test_no_hosts_is_refused() -> None:
    with pytest.raises(LabError, match="at least one"):
        labcore.parse_host_specs([])


def test_too_many_hosts_is_refused() -> None:
    with pytest.raises(LabError, match="at most"):
        labcore.parse_host_specs([f"h{i}" for i in range(labcore.MAX_HOSTS + 1)])


# --- subnet allocation ---------------------------------------------------------------


def test_first_lab_gets_index_1() -> None:
    assert labcore.allocate_index([], []) == 1
    assert labcore.lab_network(1) == ipaddress.IPv4Network("10.213.1.0/24")


def test_indexes_of_other_labs_are_skipped() -> None:
    assert labcore.allocate_index([1, 2, 4], []) == 3


def test_subnets_used_on_the_machine_are_skipped() -> None:
    taken = [ipaddress.IPv4Network("10.213.1.0/24"), ipaddress.IPv4Network("10.213.2.128/25")]
    assert labcore.allocate_index([], taken) == 3


def test_a_wider_route_covering_the_pool_start_is_skipped() -> None:
    taken = [ipaddress.IPv4Network("10.213.0.0/22")]
    assert labcore.allocate_index([], taken) == 4


def test_default_route_does_not_block_allocation() -> None:
    assert labcore.allocate_index([], [ipaddress.IPv4Network("0.0.0.0/0")]) == 1


def test_exhausted_pool_is_a_clear_error() -> None:
    with pytest.raises(LabError, match="no free /24"):
        labcore.allocate_index(range(1, 255), [])


@pytest.mark.parametrize("index", [0, 255, -1])
def test_indexes_outside_the_pool_are_rejected(index: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        labcore.lab_network(index)


def test_every_lab_gets_its_own_bridge_fitting_ifnamsiz() -> None:
    names = {labcore.bridge_name(i) for i in range(1, 255)}
    assert len(names) == 254
    assert max(len(name) for name in names) <= 15


def test_every_lab_bridge_gets_its_own_locally_administered_unicast_mac() -> None:
    macs = {labcore.bridge_mac(i) for i in range(1, 255)}
    assert len(macs) == 254
    first_octets = {int(mac.split(":")[0], 16) for mac in macs}
    assert all(octet & 0b10 and not octet & 0b1 for octet in first_octets)


def test_host_addresses_start_at_10_and_stay_in_the_lab_subnet() -> None:
    addresses = labcore.host_addresses(7, 3)
    assert [str(a) for a in addresses] == ["10.213.7.10", "10.213.7.11", "10.213.7.12"]
    assert labcore.gateway_address(7) == ipaddress.IPv4Address("10.213.7.1")
    assert all(a in labcore.lab_network(7) for a in labcore.host_addresses(7, labcore.MAX_HOSTS))


# --- files written -------------------------------------------------------------------


def _lab() -> tuple[list[HostSpec], list[ipaddress.IPv4Address]]:
    hosts = labcore.parse_host_specs(["reg1:registry", "reg2:registry", "data:db,cache", "lone"])
    return hosts, labcore.host_addresses(3, len(hosts))


def test_inventory_groups_hosts_and_sets_connection_and_become() -> None:
    hosts, addresses = _lab()
    inventory = yaml.safe_load(labcore.render_inventory(hosts, addresses, KEY))["all"]
    assert inventory["vars"]["ansible_user"] == "lab"
    assert inventory["vars"]["ansible_ssh_private_key_file"] == KEY
    assert inventory["vars"]["ansible_become_method"] == "sudo"
    assert inventory["vars"]["ansible_python_interpreter"] == "/usr/bin/python3"
    # become must be asked for by playbooks, as on real servers
    assert "ansible_become" not in inventory["vars"]
    assert inventory["hosts"]["reg2"]["ansible_host"] == "10.213.3.11"
    assert inventory["hosts"]["lone"]["ansible_host"] == "10.213.3.13"
    assert list(inventory["children"]["registry"]["hosts"]) == ["reg1", "reg2"]
    assert list(inventory["children"]["db"]["hosts"]) == ["data"]
    assert list(inventory["children"]["cache"]["hosts"]) == ["data"]


def test_inventory_quotes_awkward_paths() -> None:
    hosts, addresses = _lab()
    key = '/srv/a dir: with "quotes"/key'
    inventory = yaml.safe_load(labcore.render_inventory(hosts, addresses, key))
    assert inventory["all"]["vars"]["ansible_ssh_private_key_file"] == key


def test_inventory_without_groups_has_no_children() -> None:
    hosts = labcore.parse_host_specs(["solo"])
    inventory = yaml.safe_load(labcore.render_inventory(hosts, labcore.host_addresses(1, 1), KEY))
    assert "children" not in inventory["all"]


def test_instance_config_is_molecules_list_format() -> None:
    hosts, addresses = _lab()
    config = yaml.safe_load(labcore.render_instance_config(hosts, addresses, KEY))
    assert config[0] == {
        "instance": "reg1",
        "address": "10.213.3.10",
        "user": "lab",
        "port": 22,
        "identity_file": KEY,
    }
    assert [item["instance"] for item in config] == ["reg1", "reg2", "data", "lone"]


def test_instance_config_of_no_hosts_is_an_empty_list() -> None:
    assert yaml.safe_load(labcore.render_instance_config([], [], KEY)) == []


def test_hosts_and_addresses_must_pair_up() -> None:
    hosts, addresses = _lab()
    with pytest.raises(ValueError, match="zip"):
        labcore.render_inventory(hosts, addresses[:-1], KEY)


def test_network_unit_sets_static_address_and_gateway() -> None:
    unit = labcore.render_network_unit(ipaddress.IPv4Address("10.213.5.12"), 5)
    assert "Name=host0" in unit.splitlines()
    assert "Address=10.213.5.12/24" in unit.splitlines()
    assert "Gateway=10.213.5.1" in unit.splitlines()
    assert "RequiredForOnline=routable" in unit.splitlines()
    assert "DHCP" not in unit


def test_etc_hosts_lists_every_lab_host() -> None:
    hosts, addresses = _lab()
    lines = labcore.render_etc_hosts(hosts, addresses).splitlines()
    assert "127.0.0.1\tlocalhost" in lines
    assert "10.213.3.12\tdata" in lines
    assert len([line for line in lines if line.startswith("10.213.3.")]) == 4


# --- resolver ------------------------------------------------------------------------


def test_resolver_of_the_build_machine_is_used_when_reachable() -> None:
    text = "search lan\nnameserver 10.255.255.53\n"
    assert labcore.usable_resolv_conf([("/etc/resolv.conf", text)]) == text


def test_loopback_stub_resolver_falls_back_to_the_upstream_list() -> None:
    stub = "nameserver 127.0.0.53\noptions edns0\n"
    upstream = "nameserver 192.0.2.1\nnameserver 2001:db8::1\n"
    chosen = labcore.usable_resolv_conf(
        [("/etc/resolv.conf", stub), ("/run/systemd/resolve/resolv.conf", upstream)]
    )
    assert chosen == upstream


@pytest.mark.parametrize(
    "text", ["nameserver 127.0.0.1\n", "nameserver ::1\n", "# no servers\n", ""]
)
def test_no_reachable_resolver_is_a_clear_error(text: str) -> None:
    with pytest.raises(LabError, match=r"no resolver the lab hosts can reach in /etc/resolv\.conf"):
        labcore.usable_resolv_conf([("/etc/resolv.conf", text)])
