"""Typed, atomic, pickle-free artifact I/O.

Every file a stage writes goes through here so that (a) an interrupted job never
leaves a half-written output (write to a temporary sibling, then ``os.replace``),
(b) nothing is ever unpickled on load, and (c) a file that fails to parse raises an
:class:`ArtifactError` naming it. Tensors are safetensors, tables Parquet, metrics JSON.

Each file carries a SHA-256 of its own content (safetensors and Parquet in their metadata,
JSON as the key ``cimflow_sha256``), checked on every load: a file truncated or
bit-flipped after it was written is refused before a stage uses it, with an error naming
it (`cimflow verify` checks a whole run).
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
DIGEST_KEY = "cimflow_sha256"  # the content hash inside each artifact
_PLACEHOLDER = b"0" * 64


def _seal(data: bytes, start: int, end: int) -> bytes:
    """``data`` with the placeholder inside ``data[start:end]`` (the file's header or footer)
    replaced by the SHA-256 of ``data`` as written with the placeholder."""
    region = data[start:end]
    if region.count(_PLACEHOLDER) != 1:
        raise ValueError(f"the content-hash placeholder occurs {region.count(_PLACEHOLDER)} times, not once")
    digest = hashlib.sha256(data).hexdigest().encode()
    return data[:start] + region.replace(_PLACEHOLDER, digest) + data[end:]


def _check_seal(path: str | os.PathLike, data: bytes, start: int, end: int, stored: object) -> None:
    """Refuse ``data`` unless hashing it with its stored digest put back to the placeholder
    gives that digest: any byte changed after writing (a flip, a truncation) fails."""
    if not isinstance(stored, str):
        raise ArtifactError(f"{path}: no content hash ({DIGEST_KEY}); not written by cimflow, or damaged")
    region = data[start:end]
    token = stored.encode()
    if len(token) == len(_PLACEHOLDER) and region.count(token) == 1:
        computed = hashlib.sha256(data[:start] + region.replace(token, _PLACEHOLDER) + data[end:]).hexdigest()
    else:
        computed = "(unreadable)"
    if computed != stored:
        raise ArtifactError(
            f"{path}: content hash mismatch (stored {stored[:12]}, computed {computed[:12]}): the file changed "
            "after it was written (corrupted or edited); delete it and rerun the stage that writes it"
        )


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
    if DIGEST_KEY in meta:
        raise ValueError(f"{DIGEST_KEY} is reserved for the content hash")
    meta[DIGEST_KEY] = _PLACEHOLDER.decode()
    data = st_save(arrays, metadata={_META_KEY: json.dumps(meta, sort_keys=True)})
    write_bytes(path, _seal(data, 8, 8 + int.from_bytes(data[:8], "little")))


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
    _check_seal(path, data, 8, 8 + header_len, meta.pop(DIGEST_KEY, None))
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
    """Parquet (zstd) without the pandas schema blob, so bytes depend on data only; the
    content hash sits in the footer's key-value metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata({DIGEST_KEY: _PLACEHOLDER})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue().to_pybytes()
    write_bytes(path, _seal(data, *_footer(data)))


def _footer(data: bytes) -> tuple[int, int]:
    """Byte range of a Parquet file's footer (its metadata and the trailing length and magic)."""
    return len(data) - 8 - int.from_bytes(data[-8:-4], "little"), len(data)


def load_table(path: str | os.PathLike, external: bool = False) -> pd.DataFrame:
    """A cimflow table, its content hash checked; ``external`` tables (a user's own file,
    e.g. measured INL) carry none."""
    data = _read_bytes(path, "table")
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        table, footer = parquet.read(), parquet.metadata.metadata or {}
    except Exception as exc:
        raise ArtifactError(f"{path}: not a valid Parquet file ({exc})") from exc
    if not external:  # the footer's own copy; the Arrow schema inside it holds the placeholder
        stored = footer.get(DIGEST_KEY.encode())
        _check_seal(path, data, *_footer(data), stored.decode("ascii", "replace") if stored else None)
    return table.replace_schema_metadata(None).to_pandas()


# ---------------------------------------------------------------- json


def save_json(path: str | os.PathLike, obj: Mapping[str, Any]) -> None:
    """A JSON object with its content hash as one more key."""
    if DIGEST_KEY in obj:
        raise ValueError(f"{DIGEST_KEY} is reserved for the content hash")
    text = json.dumps({**obj, DIGEST_KEY: _PLACEHOLDER.decode()}, indent=2, sort_keys=True) + "\n"
    data = text.encode("utf-8")
    write_bytes(path, _seal(data, 0, len(data)))


def load_json(path: str | os.PathLike) -> dict[str, Any]:
    data = _read_bytes(path, "JSON")
    try:
        obj = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise ArtifactError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    _check_seal(path, data, 0, len(data), obj.pop(DIGEST_KEY, None))
    return obj


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
