"""Where the lab tool keeps its files: everything lives under LAB_ROOT.

LAB_ROOT is read from LLMOPS_LAB_ROOT when this module is imported (tests reload it
after setting the variable); the other lab modules read these paths at call time.
"""

from __future__ import annotations

import os
from pathlib import Path

LAB_ROOT = Path(os.environ.get("LLMOPS_LAB_ROOT", "/var/lib/llmops-lab"))
BASE_DIR = LAB_ROOT / "base-bookworm"
RUN_DIR = LAB_ROOT / "run"  # internal state per lab, removed by `down`
LABS_DIR = LAB_ROOT / "labs"  # default state dirs (inventory, key) per lab
APT_CACHE_DIR = LAB_ROOT / "apt-cache"  # persistent per lab+host apt archives
# Every .deb any host downloaded, shared by all labs: hard-linked into a host's own
# archives before it boots and collected back when its lab goes down.
APT_POOL_DIR = APT_CACHE_DIR / "pool"
DEBOOTSTRAP_CACHE = LAB_ROOT / "debootstrap-cache"
FORWARD_SAVED = LAB_ROOT / "ip_forward.saved"
LOCK_DIR = LAB_ROOT / "locks"
