"""params.yaml validation: every bad value is named with its key path and stops all work."""

from __future__ import annotations

import pytest
import yaml

from cimflow.config import ParamsError, load_params, parse_params
from cimflow.models import BUILTIN
from conftest import ROOT, run


def test_committed_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.tasks == ["digits", "digits_shift", "sr_embedded"]  # make reproduce needs no data files
    assert params.train["digits"].model.to_ref() == BUILTIN["lenet5"]


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        ("train.digits.lr", "fast", ["train.digits.lr", "'fast'", "valid number"]),
        ("train.digits.epochs", 0, ["train.digits.epochs", "greater than 0", "got 0"]),
        ("data.digits.test_fraction", 1.5, ["data.digits.test_fraction", "less than 1", "1.5"]),
        ("data.digits.val_fraction", 0.0, ["data.digits.val_fraction", "greater than 0", "0.0"]),
        ("seeds", [], ["seeds", "at least 1 item"]),
        ("seeds", [0, -1], ["seeds.1", "greater than or equal to 0", "-1"]),
        ("seeds", [3, 3], ["seeds lists a seed twice: [3, 3]"]),
        ("train.digits.model", {"file": "nets/missing.py", "class": "Net", "args": {}},
         ["train.digits.model", "model file 'nets/missing.py' is not a .py file"]),
        ("train.digits.model", {"module": "cimflow.models.lenet5", "class": "LeNet5"},
         ["train.digits.model.args: required key is missing"]),
        ("train.digits.model", {"module": "cimflow.models.lenet5", "class": "Le Net", "args": {}},
         ["train.digits.model.class", "should match pattern"]),
        ("export.weight_bits", 12, ["export.weight_bits", "less than or equal to 8", "12"]),
        ("train.digits.schedule", "linear", ["train.digits.schedule", "'cosine', 'step' or 'onecycle'", "'linear'"]),
        ("evaluate.batch_size", True, ["evaluate.batch_size", "valid integer", "True"]),
    ],
)
def test_bad_value_names_key_value_and_allowed(default_params, dotted, value, expected):
    node = default_params
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    with pytest.raises(ParamsError) as err:
        parse_params(default_params)
    for text in expected:
        assert text in str(err.value)


def test_unknown_and_missing_keys_are_reported(default_params):
    default_params["export"]["typo_bits"] = 8
    del default_params["evaluate"]["confidence_level"]
    with pytest.raises(ParamsError) as err:
        parse_params(default_params)
    assert "export.typo_bits: unknown key" in str(err.value)
    assert "evaluate.confidence_level: required key is missing" in str(err.value)


def test_task_without_sections_is_rejected(default_params):
    default_params["tasks"] = ["digits", "svhn"]
    with pytest.raises(ParamsError, match=r"tasks\[1\] = 'svhn' has no 'data.svhn' entry"):
        parse_params(default_params)


def test_cifar10_runs_with_the_methods_it_configures(default_params):
    """A task without an ADMM schedule cannot run the ADMM methods (the error names the
    missing section); the CiM sweep covers only the listed models that run builds."""
    default_params["tasks"] = ["cifar10"]
    parse_params(default_params)  # ResNet-20 has its ADMM schedules
    del default_params["admm"]["cifar10"]
    with pytest.raises(ParamsError, match="admm.cifar10"):
        parse_params(default_params)
    default_params["methods"] = ["baseline", "dynasty", "dynasty_int8"]
    assert parse_params(default_params).swept_methods == ["baseline"]
    default_params["methods"] = ["dynasty"]
    assert parse_params(default_params).swept_methods == []


def test_warmup_must_be_shorter_than_training(default_params):
    default_params["train"]["digits"]["warmup_epochs"] = 40
    with pytest.raises(ParamsError, match="warmup_epochs"):
        parse_params(default_params)


def test_stage_with_bad_params_exits_nonzero_and_writes_nothing(tmp_path, default_params):
    default_params["data"]["digits"]["test_fraction"] = -0.1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params))
    result = run(["cimflow", "prepare", "--task", "digits"], cwd=tmp_path)
    assert result.returncode == 2
    assert "data.digits.test_fraction" in result.stderr and "-0.1" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_unparsable_yaml_names_the_file(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
