"""A lab's recorded state: run dirs, state.json, the files written for its users."""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from pathlib import Path
from typing import Any

import labnet
import labpaths
from labcore import (
    HostSpec,
    allocate_index,
    bridge_name,
    host_addresses,
    lab_network,
    render_instance_config,
    render_inventory,
)
from labssh import KEY_NAME

STATE_FILES = ("inventory.yml", "instance_config.yml", KEY_NAME, f"{KEY_NAME}.pub")


def lab_run_dir(lab: str) -> Path:
    return labpaths.RUN_DIR / lab


def load_state(lab: str) -> dict[str, Any] | None:
    path = lab_run_dir(lab) / "state.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def save_state(state: dict[str, Any]) -> None:
    path = lab_run_dir(state["lab"]) / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.rename(path)


def all_states() -> list[dict[str, Any]]:
    if not labpaths.RUN_DIR.is_dir():
        return []
    states = []
    for entry in sorted(labpaths.RUN_DIR.iterdir()):
        state = load_state(entry.name)
        if state is not None:
            states.append(state)
    return states


def running_labs() -> list[str]:
    return [state["lab"] for state in all_states()]


def write_state_files(state: dict[str, Any], specs: list[HostSpec]) -> Path:
    state_dir = Path(state["state_dir"])
    key = state_dir / KEY_NAME
    addresses = [ipaddress.IPv4Address(h["address"]) for h in state["hosts"]]
    inventory = state_dir / "inventory.yml"
    inventory.write_text(render_inventory(specs, addresses, str(key)))
    (state_dir / "instance_config.yml").write_text(
        render_instance_config(specs, addresses, str(key))
    )
    return inventory


def specs_of(state: dict[str, Any]) -> list[HostSpec]:
    return [HostSpec(h["name"], tuple(h["groups"])) for h in state["hosts"]]


def new_state(lab: str, specs: list[HostSpec], state_dir: Path) -> dict[str, Any]:
    used = [state["index"] for state in all_states()]
    index = allocate_index(used, labnet.taken_networks())
    run_dir = lab_run_dir(lab)
    addresses = host_addresses(index, len(specs))
    return {
        "lab": lab,
        "index": index,
        "subnet": str(lab_network(index)),
        "bridge": bridge_name(index),
        "state_dir": str(state_dir),
        "created_at": time.time(),
        "hosts": [
            {
                "name": spec.name,
                "groups": list(spec.groups),
                "address": str(address),
                "machine": f"lab{index}-{spec.name}",
                "machine_id": uuid.uuid4().hex,
                "upper": str(run_dir / "hosts" / spec.name / "upper"),
                "log": str(run_dir / "logs" / f"{spec.name}.log"),
                "apt_cache": str(labpaths.APT_CACHE_DIR / lab / spec.name),
                "pid": None,
                "pid_start": None,
            }
            for spec, address in zip(specs, addresses, strict=True)
        ],
    }
