"""Property-based fuzz of params.yaml: every malformed file (a wrong type, a value of the
wrong nesting, an unknown key, a missing key) is refused with a message naming the key.

What counts as malformed comes from the schema's JSON Schema, not from the validator's
behaviour: an unknown key only where the schema forbids extra keys (so not a new task's
section or a new layer in a per-layer map), a missing key only where it is required, a
wrong type only where the schema constrains the type (a model's constructor ``args`` are
free-form and checked when the model is built).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cimflow.config import Params, ParamsError, parse_params
from conftest import ROOT

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())
SCHEMA = Params.model_json_schema()
ODD = {"string": "not-a-value", "number": 7.25, "boolean": True, "array": [1, "a"], "object": {"x": 1}, "null": None}


def _resolve(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _alternatives(node: Any, value: Any) -> list[Any]:
    """The schema's alternatives for ``value``; a tagged union gives the member its tag names."""
    node = _resolve(node)
    if not isinstance(node, dict):
        return [node]
    tag = node.get("discriminator")
    if tag and isinstance(value, dict) and value.get(tag["propertyName"]) in tag["mapping"]:
        return [_resolve({"$ref": tag["mapping"][value[tag["propertyName"]]]})]
    for union in ("anyOf", "oneOf"):
        if union in node:
            return [alt for member in node[union] for alt in _alternatives(member, value)]
    return [node]


def _constrained(alts: list[Any]) -> bool:
    return bool(alts) and all(isinstance(a, dict) and "type" in a for a in alts)


def _child(alts: list[Any], key: Any, value: Any) -> list[Any]:
    found = []
    for alt in alts:
        if alt.get("type") == "object":
            extra = alt.get("additionalProperties", True)
            found.append(alt.get("properties", {}).get(key, extra if isinstance(extra, dict) else {}))
        elif alt.get("type") == "array":
            found.append(alt.get("items", {}))
    return [a for node in found for a in _alternatives(node, value)]


def _cases() -> list[tuple[str, tuple, Any]]:
    """Every (mutation, key path, replacement) the schema says is malformed."""
    cases = []

    def walk(value: Any, alts: list[Any], path: tuple) -> None:
        if not _constrained(alts):
            return  # free-form (a model's constructor args): nothing is malformed here
        types = {a["type"] for a in alts}
        if path:
            cases.extend(("wrong type", path, odd) for kind, odd in ODD.items() if kind not in types)
            nested = [value] if isinstance(value, dict) else {"value": value}
            if ("array" if isinstance(value, dict) else "object") not in types:
                cases.append(("wrong nesting", path, nested))
        objects = [a for a in alts if a["type"] == "object"]
        if isinstance(value, dict) and objects:
            if all(a.get("additionalProperties") is False for a in objects):
                cases.append(("unknown key", (*path, "no_such_key"), next(iter(value.values()), 1)))
            for key, item in value.items():
                if all(key in a.get("required", ()) for a in objects):
                    cases.append(("missing key", (*path, key), None))
                walk(item, _child(alts, key, item), (*path, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, _child(alts, i, item), (*path, i))

    walk(DEFAULT, [SCHEMA], ())
    return cases


CASES = _cases()


def _apply(raw: dict, how: str, path: tuple, replacement: Any) -> None:
    *parents, leaf = path
    node = raw
    for step in parents:
        node = node[step]
    if how == "missing key":
        del node[leaf]
    else:
        node[leaf] = copy.deepcopy(replacement)


def _refusal(raw: dict) -> str:
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    return str(err.value)


def test_every_single_damage_is_refused_naming_the_key():
    """All of them, not a sample: the file with one key damaged never validates, and the
    message names that key."""
    kinds = {how for how, _, _ in CASES}
    assert kinds == {"wrong type", "wrong nesting", "unknown key", "missing key"} and len(CASES) > 1000
    for how, path, replacement in CASES:
        raw = copy.deepcopy(DEFAULT)
        _apply(raw, how, path, replacement)
        key = ".".join(map(str, path))
        assert key in _refusal(raw), f"{how} at {key}"


@settings(max_examples=300, deadline=None)
@given(picked=st.lists(st.sampled_from(CASES), min_size=2, max_size=4, unique_by=lambda case: case[1][0]))
def test_several_damaged_keys_are_all_named(picked):
    """Damage in several top-level sections at once: one message lists every damaged key."""
    raw = copy.deepcopy(DEFAULT)
    for how, path, replacement in picked:
        _apply(raw, how, path, replacement)
    message = _refusal(raw)
    for how, path, _ in picked:
        assert ".".join(map(str, path)) in message, f"{how} at {'.'.join(map(str, path))}: {message}"
