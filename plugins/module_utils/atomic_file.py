# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)
"""Replace a file so that a reader sees the old text or the new one, never half of it.

Used by the release tree (metadata, history) and by instance_switch (env files). Stdlib
only: it runs on the managed host.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


def fsync_folder(folder: str) -> None:
    """Make a rename or unlink inside ``folder`` survive a crash."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(
    path: str,
    text: str,
    *,
    mode: int,
    owner: tuple[int, int] | None = None,
    prefix: str = ".tmp-",
    suffix: str = "",
    sync_folder: bool = False,
) -> None:
    """Write ``text`` to a temporary file beside ``path`` (flushed to disk, then given
    its owner and mode) and rename it over ``path``. On any error the temporary file is
    removed and ``path`` is untouched. ``sync_folder`` also makes the rename durable."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if owner is not None:
            os.chown(tmp, *owner)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync_folder:
        fsync_folder(folder)
