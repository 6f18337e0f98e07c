"""Each role's defaults and meta/argument_specs.yml describe the same variables."""

from pathlib import Path

import pytest
import yaml

ROLES = sorted(p for p in (Path(__file__).parents[2] / "roles").iterdir() if p.is_dir())


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {} if path.exists() else {}


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_has_argument_specs(role: Path) -> None:
    assert (role / "meta" / "argument_specs.yml").exists(), f"{role.name}: no argument specs"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_and_argument_specs_list_the_same_variables(role: Path) -> None:
    defaults = set(_yaml(role / "defaults" / "main.yml"))
    specs = _yaml(role / "meta" / "argument_specs.yml").get("argument_specs", {})
    documented = set(specs.get("main", {}).get("options", {}))
    assert defaults - documented == set(), f"{role.name}: defaults not in argument_specs"
    undocumented_defaults = {
        name
        for name, spec in specs.get("main", {}).get("options", {}).items()
        if name not in defaults and not spec.get("required", False)
    }
    assert undocumented_defaults == set(), f"{role.name}: optional specs without a default"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_public_variables_carry_the_role_prefix(role: Path) -> None:
    defaults = _yaml(role / "defaults" / "main.yml")
    stray = [name for name in defaults if not name.startswith(f"{role.name}_")]
    assert stray == [], f"{role.name}: variables without the role prefix: {stray}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_argument_specs_are_plain_yaml(role: Path) -> None:
    """No anchors or aliases: each entry point reads on its own (shared specs: meta/options.yml)."""
    text = (role / "meta" / "argument_specs.yml").read_text()
    events = yaml.parse(text)
    anchored = [e for e in events if getattr(e, "anchor", None)]
    assert anchored == [], f"{role.name}: YAML anchors/aliases in argument_specs.yml"
