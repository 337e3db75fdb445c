"""The environment Snakemake's jobs run in: the same Python environment as Snakemake itself."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def use_own_environment() -> None:
    """Put this interpreter's scripts folder first on PATH, so a rule's `cimflow` is the one
    installed beside the Snakemake running it (`.venv/bin/snakemake` works without
    activating the venv); jobs inherit the environment, on a cluster too."""
    own = str(Path(sys.executable).parent)
    os.environ["PATH"] = os.pathsep.join([own, *(p for p in os.environ.get("PATH", "").split(os.pathsep) if p)])
