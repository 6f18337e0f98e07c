"""A release killed (SIGKILL, no cleanup) at each step never leaves ``current`` on an
incomplete release, and the next run recovers from whatever the killed one left."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from test_release_lib import (
    COLLECTIONS,
    PYTHON,
    ReleaseTree,
    current_target,
    perform_release,
)

# In the order install_release and perform_release reach them.
STEPS = ["created", "extracted", "verified", "installed", "metadata", "complete", "switched"]

RUNNER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    from ansible_collections.llmops.registry.plugins.module_utils.release_actions import (
        perform_release,
    )

    def hook(step):
        if step == sys.argv[5]:
            os.kill(os.getpid(), signal.SIGKILL)

    perform_release(path=sys.argv[2], version=sys.argv[3], artifact=sys.argv[4],
                    python=sys.argv[6], hook=hook)
    """
)


def _release_killed_at(step: str, root: Path, artifact: Path) -> int:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            RUNNER,
            str(COLLECTIONS),
            str(root),
            "1.2.0",
            str(artifact),
            step,
            PYTHON,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode


def _assert_current_is_complete(root: Path) -> str:
    tree = ReleaseTree(str(root))
    active = tree.active()
    assert active is not None
    assert tree.is_complete(active), f"current points to incomplete release {active}"
    return active


def test_killed_at_every_step_current_stays_complete_and_next_run_recovers(
    tree: Path, artifacts: dict[str, Path]
) -> None:
    artifact = artifacts["1.2.0"]
    for step in STEPS:
        code = _release_killed_at(step, tree, artifact)
        assert code == -signal.SIGKILL, f"runner was not killed at {step} (exit {code})"
        active = _assert_current_is_complete(tree)
        expected = "1.2.0" if step == "switched" else "1.1.0"
        assert active == expected, f"after a kill at {step} current is {active}"
        assert not (tree / ".current.tmp").exists()

    # The run after the last interruption finishes the job.
    result = perform_release(path=str(tree), version="1.2.0", artifact=str(artifact), python=PYTHON)
    assert current_target(tree) == "releases/1.2.0"
    state = ReleaseTree(str(tree)).state()
    assert state["unfinished"] == []
    assert state["previous"] == "1.1.0"
    assert result["releases"] == ["1.0.0", "1.1.0", "1.2.0"]
    history = json.loads((tree / "history.json").read_text())["activations"]
    assert history == ["1.0.0", "1.1.0", "1.2.0"]
    # No leftovers of the killed runs (staging folders, temporary links).
    assert sorted(p.name for p in (tree / "releases").iterdir()) == ["1.0.0", "1.1.0", "1.2.0"]
    assert not [p for p in tree.iterdir() if p.name.startswith(".current.tmp")]


def test_killed_install_of_a_new_version_is_redone_from_scratch(
    tree: Path, artifacts: dict[str, Path]
) -> None:
    assert _release_killed_at("installed", tree, artifacts["1.2.0"]) == -signal.SIGKILL
    assert (tree / "releases/1.2.0/.unfinished").exists()
    result = perform_release(
        path=str(tree), version="1.2.0", artifact=str(artifacts["1.2.0"]), python=PYTHON
    )
    assert result["installed"] and result["switched"]
    assert not (tree / "releases/1.2.0/.unfinished").exists()
    assert (tree / "releases/1.2.0/venv/bin/schema-registry").exists()
