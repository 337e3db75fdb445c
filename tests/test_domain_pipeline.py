"""Domain-adaptation tasks in the DAG: task kinds and their methods, the target splits,
the ADMP procedures end to end, and shrunk models as artifacts."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import ROOT, copy_project, domain_smoke_params, run

from cimflow import layout
from cimflow.artifacts import (
    ArtifactError,
    load_json,
    load_table,
    load_tensors,
    save_tensors,
)
from cimflow.compress.admm.projections import kept_count
from cimflow.compress.admp import method as procedures
from cimflow.config import ParamsError, load_params, parse_params
from cimflow.data.domains import UNLABELED
from cimflow.data.split import DataError
from cimflow.evaluate import count_parameters
from cimflow.methods import DOMAIN_ADAPTATION, METHODS
from cimflow.modelio import MODEL_FORMAT, ModelSpec, load_model, save_model
from cimflow.modelref import ModelRef
from cimflow.preprocess import Preprocessor
from cimflow.shrink import shrink
from cimflow.stages import prepare
from cimflow.stages.common import load_split
from cimflow.train import seed_everything


def _lenet_spec() -> ModelSpec:
    ref = ModelRef("LeNet5", module="cimflow.models.lenet5", args={})
    return ModelSpec(ref, 1, 10, Preprocessor(28, (0.5,), (0.25,)), tuple(str(i) for i in range(10)))


def test_each_task_runs_the_listed_methods_of_its_kind(default_params):
    params = parse_params(default_params)
    assert params.kind("digits") == "classification" and params.kind("digits_shift") == DOMAIN_ADAPTATION
    assert params.task_methods("digits_shift") == ["baseline", "dann", "admp", "adapt_then_prune",
                                                   "prune_then_adapt"]
    assert not {"dann", "admp"} & set(params.task_methods("digits"))


def test_a_task_with_no_method_of_its_kind_is_rejected(default_params):
    default_params |= {"tasks": ["digits_shift"], "methods": ["admm_prune", "dynasty"]}
    with pytest.raises(ParamsError, match=r"tasks\[0\] = 'digits_shift' is a domain_adaptation task.*'dann'"):
        parse_params(default_params)


def test_domain_methods_need_the_tasks_admp_section(default_params):
    del default_params["admp"]["digits_shift"]
    with pytest.raises(ParamsError, match=r"no 'admp.digits_shift' entry, needed by \['adapt_then_prune', 'admp'"):
        parse_params(default_params)


def test_no_domain_method_reads_a_test_split():
    for spec in METHODS.values():
        assert layout.PREPARED_TEST not in spec.data
        if DOMAIN_ADAPTATION in spec.kinds and spec.kinds != ("classification", DOMAIN_ADAPTATION):
            assert {layout.TARGET_TRAIN, layout.TARGET_VAL} <= set(spec.data)


@pytest.fixture
def prepared(tmp_path, monkeypatch):
    """digits_shift prepared in a temporary project folder (default params)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(domain_smoke_params(yaml.safe_load((ROOT / "params.yaml").read_text()))))
    prepare.run("digits_shift", params_file)
    prepare.run_target("digits_shift", params_file)
    return params_file


def test_target_splits_carry_no_label_and_the_test_split_is_the_targets(prepared):
    train, val, test = (load_split(layout.path(p, task="digits_shift"))
                        for p in (layout.PREPARED_TRAIN, layout.PREPARED_VAL, layout.PREPARED_TEST))
    target, target_val = (load_split(layout.path(p, task="digits_shift"))
                          for p in (layout.TARGET_TRAIN, layout.TARGET_VAL))
    assert (target.labels == UNLABELED).all() and (target_val.labels == UNLABELED).all()
    assert (len(train.labels), len(val.labels), len(target.labels), len(target_val.labels), len(test.labels)) == (
        574, 100, 574, 101, 223)
    assert set(test.labels.tolist()) == set(range(10))  # the labeled target test split
    seen = {bytes(image) for split in (train, val, target, target_val) for image in split.images}
    assert not seen & {bytes(image) for image in test.images}


def test_prepare_target_refuses_a_classification_task(prepared):
    with pytest.raises(DataError, match="not a domain pair"):
        prepare.run_target("digits", prepared)


def _domain_data(prepared) -> tuple[procedures.DomainData, object]:
    params = load_params(prepared)
    splits = [load_split(layout.path(p, task="digits_shift")) for p in METHODS["admp"].data]
    prep = Preprocessor.fit(splits[0].images, 28)
    return procedures.DomainData(*splits, prep, torch.device("cpu")), params


def test_admp_prunes_to_the_ratio_removes_the_channels_and_is_deterministic(prepared):
    data, params = _domain_data(prepared)
    base, cfg = params.train["digits_shift"], params.admp["digits_shift"]
    seed_everything(0)
    teacher = _lenet_spec().build()
    procedures.train_teacher(teacher, data, base, cfg, seed=0)
    runs = []
    for _ in range(2):
        seed_everything(0)
        runs.append(procedures.admp(teacher, data, base, cfg, seed=0))
    result = runs[0]
    assert {k: int(v.sum()) for k, v in result.keep.items()} == {
        "conv1": kept_count(20, cfg.ratio), "conv2": kept_count(50, cfg.ratio), "fc1": kept_count(500, cfg.ratio)}
    assert result.model.conv2.out_channels == kept_count(50, cfg.ratio)
    assert count_parameters(result.model)[0] < count_parameters(teacher)[0] / 5
    assert len(result.periods) == cfg.game.epochs
    assert {"rho", "mask_distance", "target_val_agreement", "target_val_discrepancy"} <= set(result.periods[0])
    assert f"period{cfg.game.epochs}/conv1/soft" in result.snapshots
    assert [r["phase"] for r in result.history] == ["game"] * cfg.game.epochs + ["finetune"] * cfg.finetune.epochs
    for a, b in zip(result.model.state_dict().values(), runs[1].model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    masks = procedures.mask_arrays(result)
    assert masks["conv1/kept"].sum() == kept_count(20, cfg.ratio)


def test_both_naive_baselines_prune_the_same_share(prepared):
    data, params = _domain_data(prepared)
    base, cfg = params.train["digits_shift"], params.admp["digits_shift"]
    seed_everything(0)
    model = _lenet_spec().build()
    for pruner in (procedures.adapt_then_prune, procedures.prune_then_adapt):
        result = pruner(model, data, base, cfg, seed=0)
        assert result.model.fc1.out_features == kept_count(500, cfg.ratio)
        assert len(result.history) == procedures.budget(cfg)


def test_a_shrunk_model_round_trips_through_its_artifact(tmp_path):
    spec = _lenet_spec()
    torch.manual_seed(0)
    model = spec.build().eval()
    keep = {"conv1": torch.rand(20) < 0.5, "fc1": torch.rand(500) < 0.3}
    small = shrink(model, keep).eval()
    save_model(tmp_path / "m.safetensors", small, spec.shrunk(small))
    loaded, loaded_spec = load_model(tmp_path / "m.safetensors")
    assert dict(loaded_spec.widths) == {"conv1": int(keep["conv1"].sum()), "fc1": int(keep["fc1"].sum())}
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(loaded(x), small(x))


def test_widths_that_do_not_fit_the_network_are_an_artifact_error(tmp_path):
    spec = _lenet_spec()
    model = spec.build()
    meta = {"format": MODEL_FORMAT, **spec.to_metadata(), "widths": '{"fc2": 4}'}
    save_tensors(tmp_path / "m.safetensors", model.state_dict(), meta)
    with pytest.raises(ArtifactError, match="widths"):
        load_model(tmp_path / "m.safetensors")
    tensors, _ = load_tensors(tmp_path / "m.safetensors")
    assert set(tensors) == set(model.state_dict())


@pytest.mark.slow
def test_domain_task_runs_through_the_dag_to_the_chip_and_the_report(tmp_path):
    project = copy_project(tmp_path / "project", domain_smoke_params)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run(["snakemake", "--cores", "2"], cwd=project, MLFLOW_TRACKING_URI=uri)
    assert result.returncode == 0, result.stderr[-3000:]
    seed0 = project / "results" / "digits_shift" / "seed0"
    metrics = {m: load_json(seed0 / m / "metrics.json") for m in ("dann", "admp", "adapt_then_prune")}
    chip = {m: load_json(seed0 / m / "cim_metrics.json") for m in ("dann", "admp")}
    params = {m: metrics[m]["parameters"] for m in metrics}
    assert params["admp"] == params["adapt_then_prune"] < params["dann"] / 5
    assert metrics["admp"]["macs"] < metrics["dann"]["macs"] / 4
    # Structured pruning shows on the chip: fewer conversions and less energy per inference.
    assert chip["admp"]["conversions_per_inference"] < chip["dann"]["conversions_per_inference"] / 2
    assert chip["admp"]["energy_per_inference_j"] < chip["dann"]["energy_per_inference_j"] / 2
    periods = load_table(seed0 / "admp" / "periods.parquet")
    assert len(periods) == 2 and {"ratio", "rho", "mask_distance", "target_val_agreement"} <= set(periods)
    summary = (project / "reports" / "summary.md").read_text()
    section = summary.split("## Cross-domain channel pruning (ADMP)")[1].split("\n## ")[0]
    assert all(f"| digits_shift | {m} |" in section for m in ("baseline", "dann", "admp", "prune_then_adapt"))
    assert (project / layout.PLOT_DOMAIN).stat().st_size > 10_000
