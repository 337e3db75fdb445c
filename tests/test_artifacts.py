"""Artifact I/O: round trips, bit-packed masks, atomic writes, no unpickling, clear errors,
content hashes that refuse damaged files."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cimflow.artifacts import (
    ArtifactError,
    atomic_path,
    load_json,
    load_masks,
    load_table,
    load_tensors,
    save_json,
    save_masks,
    save_table,
    save_tensors,
)


def test_tensors_round_trip_with_metadata(tmp_path):
    arrays = {"w": np.arange(12, dtype=np.int8).reshape(3, 4), "s": np.ones(3, np.float32)}
    save_tensors(tmp_path / "t.safetensors", arrays, {"format": "x"})
    loaded, meta = load_tensors(tmp_path / "t.safetensors")
    assert meta == {"format": "x"}
    for name, arr in arrays.items():
        np.testing.assert_array_equal(loaded[name], arr)
        assert loaded[name].dtype == arr.dtype


def test_masks_are_bit_packed_and_exact(tmp_path):
    rng = np.random.default_rng(0)
    masks = {"conv1": rng.random((20, 1, 5, 5)) > 0.7, "fc": rng.random((10, 13)) > 0.5}
    save_masks(tmp_path / "m.safetensors", masks)
    packed, _ = load_tensors(tmp_path / "m.safetensors")
    assert packed["conv1"].dtype == np.uint8 and packed["conv1"].size == 500 // 8 + 1
    for name, mask in load_masks(tmp_path / "m.safetensors").items():
        np.testing.assert_array_equal(mask, masks[name])


def test_writes_are_byte_identical(tmp_path):
    frame = pd.DataFrame({"layer": ["a", "b"], "k": [3, 4], "v": [0.5, 1.5]})
    for i in (1, 2):
        save_table(tmp_path / f"t{i}.parquet", frame)
        save_tensors(tmp_path / f"s{i}.safetensors", {"x": np.arange(5.0)})
    assert (tmp_path / "t1.parquet").read_bytes() == (tmp_path / "t2.parquet").read_bytes()
    assert (tmp_path / "s1.safetensors").read_bytes() == (tmp_path / "s2.safetensors").read_bytes()
    pd.testing.assert_frame_equal(load_table(tmp_path / "t1.parquet"), frame)


def test_interrupted_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.json"
    save_json(target, {"old": 1})
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text('{"half":')
        raise KeyboardInterrupt
    assert load_json(target) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_pickle_is_never_loaded(tmp_path):
    evil = tmp_path / "model.safetensors"
    evil.write_bytes(pickle.dumps({"w": [1, 2, 3]}))
    with pytest.raises(ArtifactError, match="model.safetensors"):
        load_tensors(evil)


@pytest.mark.parametrize(
    ("loader", "name", "content"),
    [(load_table, "t.parquet", b"PAR1garbage"), (load_json, "m.json", b"{not json"),
     (load_tensors, "x.safetensors", b"\x05\x00")],
)
def test_corrupt_files_name_themselves(tmp_path, loader, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ArtifactError, match=name):
        loader(tmp_path / name)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ArtifactError, match="nope.parquet"):
        load_table(tmp_path / "nope.parquet")


def test_bytes_do_not_depend_on_the_process(tmp_path):
    """Hash-map ordering differs between interpreter runs; the file bytes must not."""
    import subprocess
    import sys

    script = (
        "import sys, numpy as np; from cimflow.artifacts import save_tensors; "
        "save_tensors(sys.argv[1], {'a': np.arange(3)}, {'format': 'f', 'model': 'm', 'z': '1', 'b': '2'})"
    )
    for i in range(4):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / f"{i}.st")], check=True,
                       env={"PYTHONHASHSEED": str(i)})
    assert len({(tmp_path / f"{i}.st").read_bytes() for i in range(4)}) == 1


def _written(tmp_path, kind: str):
    """One artifact of each kind as a stage writes it, and its loader."""
    path = tmp_path / f"a.{kind}"
    if kind == "safetensors":
        save_tensors(path, {"w": np.arange(48, dtype=np.int8).reshape(6, 8), "s": np.ones(3, np.float32)},
                     {"format": "x"})
        return path, load_tensors
    if kind == "parquet":
        save_table(path, pd.DataFrame({"layer": ["conv1", "fc1", "fc2"], "k": [25, 800, 500], "v": [0.5, 1.5, 2.0]}))
        return path, load_table
    save_json(path, {"accuracy": 0.9875, "parameters": 431080, "name": "baseline"})
    return path, load_json


KINDS = ("safetensors", "parquet", "json")


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_bit_flip_and_truncation_is_refused_naming_the_file(tmp_path, kind, data):
    """The content hash covers every byte: no single-bit flip or truncation anywhere in the
    file (header, data, footer, the hash itself) loads silently."""
    path, loader = _written(tmp_path, kind)
    original = path.read_bytes()
    if data.draw(st.booleans(), label="truncate"):
        damaged = original[: data.draw(st.integers(0, len(original) - 1), label="keep")]
    else:
        at = data.draw(st.integers(0, len(original) - 1), label="byte")
        bit = data.draw(st.integers(0, 7), label="bit")
        damaged = original[:at] + bytes([original[at] ^ (1 << bit)]) + original[at + 1:]
    path.write_bytes(damaged)
    with pytest.raises(ArtifactError, match=path.name):
        loader(path)


@pytest.mark.parametrize("kind", KINDS)
def test_an_intact_artifact_loads_and_its_hash_is_not_part_of_the_content(tmp_path, kind):
    path, loader = _written(tmp_path, kind)
    loaded = loader(path)
    if kind == "parquet":  # the hash lives in the footer: the frame reads back exactly as written
        frame = pd.DataFrame({"layer": ["conv1", "fc1", "fc2"], "k": [25, 800, 500], "v": [0.5, 1.5, 2.0]})
        pd.testing.assert_frame_equal(loaded, frame)
        assert loaded.attrs == {}
    else:
        assert "cimflow_sha256" not in (loaded[1] if kind == "safetensors" else loaded)


def test_a_foreign_table_needs_external(tmp_path):
    """A user's own Parquet file (measured INL) carries no cimflow hash: refused as an
    artifact, read when the caller says it is external."""
    frame = pd.DataFrame({"adc": [0], "code": [3], "inl_lsb": [0.25]})
    frame.to_parquet(tmp_path / "inl.parquet")
    with pytest.raises(ArtifactError, match="inl.parquet: no content hash"):
        load_table(tmp_path / "inl.parquet")
    pd.testing.assert_frame_equal(load_table(tmp_path / "inl.parquet", external=True), frame)


def test_verify_reports_each_damaged_artifact(tmp_path, capsys):
    from cimflow.cli import main

    run = tmp_path / "results"
    run.mkdir()
    for kind in KINDS:
        _written(run, kind)
    (run / "code").mkdir()
    (run / "code" / "train.json").write_text("{}")  # fingerprints carry no hash and are skipped
    (run / ".a.json.123.tmp").write_text("{")  # an interrupted write's temporary: not an artifact
    assert main(["verify", str(run)]) == 0
    assert "3 artifacts checked, 0 damaged" in capsys.readouterr().out

    table = run / "a.parquet"
    table.write_bytes(table.read_bytes()[:-20])
    (run / "a.json").write_text((run / "a.json").read_text().replace("0.9875", "0.9975"))
    assert main(["verify", str(run)]) == 2
    out = capsys.readouterr()
    assert "3 artifacts checked, 2 damaged" in out.out
    assert "a.parquet: not a valid Parquet file" in out.err and "a.json: content hash mismatch" in out.err
