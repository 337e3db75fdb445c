"""A researcher's own network, from a file outside src/, through the stages with no edit
to cimflow: BN folded from the graph, the fused ReLU where its graph puts one, and the
file a code input of every stage that builds the network."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from conftest import copy_project, run

MYNET = """
import torch
from torch import nn


class MyNet(nn.Module):
    \"\"\"conv -> BN -> ReLU -> pool, twice, then fc -> ReLU -> fc: nothing named convK/bnK.\"\"\"

    def __init__(self, in_channels, num_classes, input_size, width):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.stem_norm = nn.BatchNorm2d(width)
        self.body = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.body_norm = nn.BatchNorm2d(width)
        self.pool = nn.MaxPool2d(2)
        self.hidden = nn.Linear(width * (input_size // 4) ** 2, 32)
        self.out = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.stem_norm(self.stem(x))))
        x = self.pool(torch.relu(self.body_norm(self.body(x))))
        return self.out(torch.relu(self.hidden(torch.flatten(x, 1))))
"""


@pytest.mark.slow
def test_a_model_from_a_users_file_runs_train_export_map_and_evaluate_cim(tmp_path):
    project = copy_project(tmp_path / "project")
    (project / "nets").mkdir()
    (project / "nets/mynet.py").write_text(MYNET)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["digits"] |= {"model": {"file": "nets/mynet.py", "class": "MyNet", "args": {"width": 6}},
                                  "input_size": 16, "epochs": 3}
    params["methods"] = ["baseline"]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {"CIMFLOW_TRACKING": "off"}
    for args in (["prepare", "--task", "digits"], ["calibrate"]) + tuple(
            [stage, "--task", "digits", "--seed", "0", "--method", "baseline"]
            for stage in ("train", "export", "evaluate", "map", "evaluate_cim")):
        result = run(["cimflow", *args], cwd=project, **env)
        assert result.returncode == 0, f"{args}: {result.stderr[-2000:]}"
    out = project / "results/digits/seed0/baseline"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "MyNet" and metrics["int8_accuracy"] > 0.5
    mapping = pd.read_parquet(out / "cim_mapping.parquet").set_index("layer")
    assert list(mapping.index) == ["stem", "body", "hidden", "out"]  # the folded BNs are gone
    # The graph puts a ReLU straight after stem, body and hidden; a layer fuses it where
    # its inputs and bias rows fit one column. The classifier has none.
    fused = set(mapping.index[mapping["fused_relu"]])
    assert fused and fused <= {"stem", "body", "hidden"}
    cim = json.loads((out / "cim_metrics.json").read_text())
    assert cim["sign_only_fraction"] > 0.0 and cim["cim_calibrated_accuracy"] > 0.5

    # The file's fingerprint is a code input of every stage that builds the network, in
    # both front ends; DVC's fingerprint stage hashes the file itself.
    assert run(["cimflow", "dvc-yaml"], cwd=project).returncode == 0
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    model_print = "results/code/model-digits.json"
    users = {name.split("-")[0] for name, stage in stages.items() if model_print in stage["deps"]}
    assert users == {"baseline", "export", "evaluate", "map", "evaluate_cim", "cim_sweep"}  # rule names
    assert "nets/mynet.py" in stages["fingerprint"]["deps"]
    hashed = json.loads((project / model_print).read_text())
    assert list(hashed["files"]) == ["nets/mynet.py"]
    # A comment leaves the fingerprint as it is; a code change rewrites it.
    (project / "nets/mynet.py").write_text(MYNET + "\n# tuned later\n")
    assert run(["cimflow", "fingerprint"], cwd=project).stdout.startswith("fingerprints: 0 rewritten")
    (project / "nets/mynet.py").write_text(MYNET.replace("width", "channels"))
    assert "results/code/model-digits.json" in run(["cimflow", "fingerprint"], cwd=project).stdout
