"""Every role tags its tasks and names its handler topics the same way (docs/CONVENTIONS.md).

Tags: each task of tasks/main.yml (so every task it imports) carries the role's name and
a `<role>_<phase>` tag (install, configure, service, ...) or `always`; a dynamic include
passes the same tags on with `apply`. Handlers: each listens on topics that start with
the role's name (`redis restart`), and tasks notify those topics.
"""

from pathlib import Path

import pytest
import yaml

ROLES = sorted(p for p in (Path(__file__).parents[2] / "roles").iterdir() if p.is_dir())
INCLUDES = {"ansible.builtin.include_tasks", "ansible.builtin.include_role"}


def _tasks(path: Path) -> list[dict]:
    return yaml.safe_load(path.read_text()) or [] if path.exists() else []


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value] if value else []


def _flat(tasks: list[dict], inherited: list) -> list[tuple[dict, list]]:
    """Each task with its tags and those of the blocks around it."""
    out = []
    for task in tasks:
        tags = inherited + _as_list(task.get("tags"))
        if "block" in task:
            out += _flat(task["block"] + task.get("rescue", []) + task.get("always", []), tags)
        else:
            out.append((task, tags))
    return out


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_main_task_carries_the_role_and_a_phase_tag(role: Path) -> None:
    name = role.name
    wrong = []
    for task, tags in _flat(_tasks(role / "tasks" / "main.yml"), []):
        phased = "always" in tags or any(t.startswith(f"{name}_") for t in tags)
        if name not in tags or not phased:
            wrong.append((task.get("name"), tags))
        for module in INCLUDES & set(task):
            spec = task[module] if isinstance(task[module], dict) else {}
            applied = _as_list(spec.get("apply", {}).get("tags"))
            if module == "ansible.builtin.include_tasks" and name not in applied:
                wrong.append((task.get("name"), f"apply tags {applied}"))
    assert wrong == [], f"{name}: tasks/main.yml tasks without '{name}' + a phase tag: {wrong}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_handlers_listen_on_topics_named_after_the_role(role: Path) -> None:
    name = role.name
    wrong = [
        (handler.get("name"), handler.get("listen"))
        for handler in _tasks(role / "handlers" / "main.yml")
        if not _as_list(handler.get("listen"))
        or not all(str(t).startswith(f"{name} ") for t in _as_list(handler.get("listen")))
    ]
    assert wrong == [], f"{name}: handlers without a '{name} ...' listen topic: {wrong}"
