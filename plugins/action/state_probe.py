# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)
"""Controller side of llmops.registry.state_probe: O(templates) and O(copies) entries.

A role keeps one list of its templates (src, dest, owner, group, mode) and passes it
both to the probe and to one looped ansible.builtin.template task. This plugin renders
each src here, the way the template action does before it copies (same search path,
same template variables, same Jinja settings), and hands the module a O(paths) entry
with the rendered content's SHA-1, so the probe compares what the task would write.
O(copies) likewise for one looped ansible.builtin.copy task of controller files: the
SHA-1 of the file the copy action would send (found the same way, vault decrypted).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import pwd
import time

from ansible import constants as C
from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template

MODULE = "llmops.registry.state_probe"
# Keys of an entry: what the probe compares, plus what only the writing task uses
# (validate, secret, notify), so a role passes the list it loops over unchanged. A
# template's vars are its extra template variables (the task's vars for that item).
COPY_KEYS = frozenset(("src", "dest", "owner", "group", "mode", "secret", "notify"))
TEMPLATE_KEYS = COPY_KEYS | {"validate", "vars"}
COMPARED_KEYS = ("owner", "group", "mode")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("packages", "paths", "units", "enabled_units", "templates", "copies"))

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp  # not used: the module makes no temporary files
        args = dict(self._task.args)
        templates = _checked("templates", args.pop("templates", None), TEMPLATE_KEYS)
        copies = _checked("copies", args.pop("copies", None), COPY_KEYS)
        try:
            entries = [_path_entry(item, self._render(item, task_vars)) for item in templates]
            entries += [_path_entry(item, self._controller_file(item["src"])) for item in copies]
        except AnsibleError as err:
            raise AnsibleActionFail(to_text(err)) from err
        args["paths"] = list(args.get("paths") or []) + entries
        result.update(
            self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
        )
        return result

    def _controller_file(self, src: str) -> bytes:
        """The bytes ansible.builtin.copy sends for src: the role's files/ first, decrypted."""
        source = self._find_needle("files", src)
        if os.path.isdir(source):
            raise AnsibleActionFail(f"copies entry {src!r}: src is a folder, not a file")
        real = self._loader.get_real_file(source, decrypt=True)
        try:
            with open(real, "rb") as handle:
                return handle.read()
        finally:
            self._loader.cleanup_tmp_file(real)

    def _render(self, item: dict, task_vars: dict) -> bytes:
        """The bytes ansible.builtin.template writes for item (its default Jinja settings)."""
        src, dest = item["src"], item["dest"]
        source = self._find_needle("templates", src)
        data = trust_as_template(self._loader.get_text_file_contents(source))
        # The template action's search path: each search path entry's templates/ first.
        searchpath = []
        for folder in [
            *task_vars.get("ansible_search_path", []),
            self._loader._basedir,
            os.path.dirname(source),
        ]:
            searchpath += [os.path.join(folder, "templates"), folder]
        variables = dict(task_vars)
        variables.update(item.get("vars") or {})
        variables.update(
            _template_vars(src, source, dest, include_managed="ansible_managed" not in task_vars)
        )
        templar = self._templar.copy_with_new_env(
            searchpath=searchpath, available_variables=variables
        )
        overrides = {"trim_blocks": True, "lstrip_blocks": False, "newline_sequence": "\n"}
        text = templar.template(data, escape_backslashes=False, overrides=overrides)
        return to_bytes(
            "" if text is None else text, encoding="utf-8", errors="surrogate_or_strict"
        )


def _path_entry(item: dict, content: bytes) -> dict:
    """The module's paths entry for one file: the SHA-1 of its content and attributes."""
    entry = {
        "path": item["dest"],
        "state": "file",
        # sha1: the checksum ansible's copy and template compare
        "checksum": hashlib.sha1(content, usedforsecurity=False).hexdigest(),
    }
    entry.update({key: str(item[key]) for key in COMPARED_KEYS if item.get(key) is not None})
    return entry


def _checked(option: str, entries, keys: frozenset) -> list[dict]:
    """The option's entries, or a clear error naming the first one that is wrong."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise AnsibleActionFail(f"{option} must be a list of dicts, not {type(entries).__name__}")
    for item in entries:
        if not isinstance(item, dict):
            raise AnsibleActionFail(f"{option} entry {item!r} is not a dict")
        unknown = sorted(set(item) - keys)
        if unknown:
            raise AnsibleActionFail(
                f"{option} entry {item.get('dest', item)!r}: unknown keys {', '.join(unknown)}"
                f" (known: {', '.join(sorted(keys))})"
            )
        for key in ("src", "dest"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise AnsibleActionFail(f"{option} entry {item!r} needs {key}")
        # The name reported in in_place is dest itself: a folder ("dir/") would not match.
        if not os.path.isabs(item["dest"]) or item["dest"].endswith("/"):
            raise AnsibleActionFail(
                f"{option} entry {item['dest']!r}: dest must be the file's absolute path"
            )
        if not isinstance(item.get("vars", {}), dict):
            raise AnsibleActionFail(f"{option} entry {item['dest']!r}: vars must be a dict")
    return entries


def _template_vars(path: str, fullpath: str, dest: str, include_managed: bool) -> dict:
    """template_* variables (and ansible_managed) as the template action sets them."""
    info = os.stat(fullpath)
    try:
        uid = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        uid = info.st_uid
    variables = {
        "template_host": os.uname()[1],
        "template_path": path,
        "template_mtime": datetime.datetime.fromtimestamp(info.st_mtime),
        "template_uid": uid,
        "template_run_date": datetime.datetime.now(),
        "template_destpath": dest,
        "template_fullpath": fullpath,
    }
    if include_managed:
        # Constant placeholders, filled in by Jinja, as the template action does.
        managed = C.config.get_config_value("DEFAULT_MANAGED_STR").format(
            host="{{ template_host }}", uid="{{ template_uid }}", file="{{ template_path }}"
        )
        variables["ansible_managed"] = trust_as_template(
            time.strftime(managed, time.localtime(info.st_mtime))
        )
    return variables
