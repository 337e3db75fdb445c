"""`cimflow verify`: check every artifact of a run against the content hash it carries.

Stages already refuse a damaged input when they load it; this checks a whole tree at once
(after copying results between machines, a `dvc pull`, or a crash) without running
anything. The code fingerprints (results/code) are not artifacts: they are recomputed from
the sources on every parse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from tqdm import tqdm

from cimflow.artifacts import ArtifactError, load_json, load_table, load_tensors
from cimflow.fingerprint import CODE_DIR

LOADERS: dict[str, Callable[[Path], object]] = {".safetensors": load_tensors, ".parquet": load_table,
                                                ".json": load_json}


def artifacts(roots: Iterable[Path]) -> list[Path]:
    """Artifact files under ``roots`` (files or folders), sorted; hidden files (an
    interrupted write's temporary) and the code fingerprints are left out."""
    found = set()
    for root in roots:
        if not root.exists():
            raise ArtifactError(f"verify: {root} does not exist")
        for path in [root] if root.is_file() else root.rglob("*"):
            if (path.is_file() and path.suffix in LOADERS and not path.name.startswith(".")
                    and not path.resolve().parent.as_posix().endswith(CODE_DIR)):
                found.add(path)
    return sorted(found)


def verify(roots: Iterable[Path]) -> tuple[int, list[str]]:
    """(number of artifacts checked, one message per damaged file)."""
    files = artifacts(roots)
    problems = []
    for path in tqdm(files, desc="verify", unit="file", disable=None):
        try:
            LOADERS[path.suffix](path)
        except ArtifactError as exc:
            problems.append(str(exc))
    return len(files), problems
