"""Writes or checks roles/*/meta/argument_specs.yml from roles/*/meta/options.yml.

A role whose entry points (main and the tasks_from ones) share most variables keeps
each variable's spec once, in meta/options.yml, and names the variables each entry
point takes (`options: [...]`, or every one but `options_except: [...]`, in the order
of options.yml); the argument_specs.yml that Ansible reads is generated from it, so the
two can never say different things about one variable. `--check` (make lint) fails
when a generated file is out of date.

    python3 tests/gen_argument_specs.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROLES = Path(__file__).resolve().parents[1] / "roles"
HEADER = (
    "---\n# Generated from meta/options.yml by tests/gen_argument_specs.py:"
    " edit that file, then run it.\n"
)


class _Dumper(yaml.SafeDumper):
    """Block style with indented sequences (yamllint's default), no anchors."""

    def ignore_aliases(self, data):
        return True

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def render(source: dict) -> str:
    options = source["options"]
    specs = {}
    for name, entry in source["entry_points"].items():
        named = entry.get("options", []) + entry.get("options_except", [])
        unknown = [n for n in named if n not in options]
        if unknown:
            raise SystemExit(f"entry point {name}: options not defined in options.yml: {unknown}")
        if "options" in entry:
            names = [n for n in options if n in entry["options"]]
        else:
            names = [n for n in options if n not in entry.get("options_except", [])]
        spec = {k: v for k, v in entry.items() if k not in ("options", "options_except")}
        spec["options"] = {n: options[n] for n in names}
        specs[name] = spec
    body = yaml.dump(
        {"argument_specs": specs}, Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True
    )
    return HEADER + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args()
    stale = []
    for source_file in sorted(ROLES.glob("*/meta/options.yml")):
        target = source_file.with_name("argument_specs.yml")
        text = render(yaml.safe_load(source_file.read_text()))
        if target.exists() and target.read_text() == text:
            continue
        if args.check:
            stale.append(str(target.relative_to(ROLES.parent)))
        else:
            target.write_text(text)
            print(f"wrote {target.relative_to(ROLES.parent)}")
    if stale:
        stale_list = ", ".join(stale)
        print(f"out of date, run tests/gen_argument_specs.py: {stale_list}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
