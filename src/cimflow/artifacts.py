"""Typed, atomic, pickle-free artifact I/O.

Every file a stage writes goes through here so that (a) an interrupted job never
leaves a half-written output (write to a temporary sibling, then ``os.replace``),
(b) nothing is ever unpickled on load, and (c) a file that fails to parse raises an
:class:`ArtifactError` naming it. Tensors are safetensors, tables Parquet, metrics JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from cimflow.atomic import atomic_path, write_bytes, write_text  # noqa: F401 - re-exported
from cimflow.errors import CimflowError


class ArtifactError(CimflowError):
    """An artifact is missing, unreadable or malformed; the message names the file."""


def _read_bytes(path: str | os.PathLike, kind: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{kind} file not found: {path}")
    return path.read_bytes()


# ---------------------------------------------------------------- tensors

_META_KEY = "cimflow"


def save_tensors(
    path: str | os.PathLike,
    tensors: Mapping[str, Any],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write named arrays (numpy or torch) as safetensors; keys are written sorted."""
    arrays = {name: np.ascontiguousarray(_to_numpy(t)) for name, t in sorted(tensors.items())}
    # safetensors keeps metadata in a hash map whose order changes between processes;
    # one key holding sorted JSON keeps the bytes (and so DVC/Snakemake hashes) stable.
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    write_bytes(path, st_save(arrays, metadata={_META_KEY: json.dumps(meta, sort_keys=True)}))


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file into numpy arrays plus its string metadata."""
    data = _read_bytes(path, "tensor")
    try:
        arrays = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        meta = json.loads((header.get("__metadata__") or {}).get(_META_KEY, "{}"))
    except Exception as exc:  # safetensors raises several error types
        raise ArtifactError(f"{path}: not a valid safetensors file ({exc})") from exc
    return arrays, meta


def _to_numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def pack_mask(mask: np.ndarray) -> np.ndarray:
    """Bit-pack a boolean mask (8 entries per byte); the shape is stored beside it."""
    return np.packbits(np.asarray(mask, dtype=bool).ravel())


def unpack_mask(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape))
    return np.unpackbits(packed, count=count).astype(bool).reshape(shape)


def save_masks(path: str | os.PathLike, masks: Mapping[str, np.ndarray]) -> None:
    """Masks as bit-packed uint8 tensors; shapes go in the metadata as JSON."""
    shapes = {name: list(np.shape(_to_numpy(m))) for name, m in masks.items()}
    save_tensors(
        path,
        {name: pack_mask(_to_numpy(m)) for name, m in masks.items()},
        {"format": "cimflow-masks-v1", "shapes": json.dumps(shapes, sort_keys=True)},
    )


def load_masks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    packed, meta = load_tensors(path)
    if meta.get("format") != "cimflow-masks-v1":
        raise ArtifactError(f"{path}: not a cimflow mask file (format={meta.get('format')!r})")
    shapes = json.loads(meta["shapes"])
    return {name: unpack_mask(arr, tuple(shapes[name])) for name, arr in packed.items()}


# ---------------------------------------------------------------- tables


def save_table(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """Parquet (zstd) without the pandas schema blob, so bytes depend on data only."""
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def load_table(path: str | os.PathLike) -> pd.DataFrame:
    if not Path(path).is_file():
        raise ArtifactError(f"table file not found: {path}")
    try:
        return pq.read_table(path).to_pandas()
    except Exception as exc:
        raise ArtifactError(f"{path}: not a valid Parquet file ({exc})") from exc


# ---------------------------------------------------------------- json


def save_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def load_json(path: str | os.PathLike) -> Any:
    data = _read_bytes(path, "JSON")
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from exc


# ---------------------------------------------------------------- hashes


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """Hash of names, dtypes, shapes and bytes: identical data gives identical hashes."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()
