"""Every registered learner (and the README's example) meets the Learner contract on a tiny
Lotka-Volterra task (:mod:`mixer.stages.contract`, which `mixer test-learner` runs on a user's
class). The list comes from the registry: a new learner is tested as it lands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mixer.methods import learner_names, learner_spec
from mixer.stages.contract import check_cell, check_learner

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE = "meanfield:MeanField"


def cases() -> list:
    """(learner, backbone) for every built-in learner and each backbone it runs, + the example."""
    out = [
        pytest.param(name, backbone, id=f"{name}-{backbone}" if backbone else name)
        for name in learner_names()
        for backbone in learner_spec(name).backbones or [None]
    ]
    return [*out, pytest.param(EXAMPLE, None, id="example-meanfield")]


@pytest.fixture(scope="module", autouse=True)
def example_importable():
    sys.path.insert(0, str(EXAMPLES))
    yield
    sys.path.remove(str(EXAMPLES))


@pytest.mark.parametrize(("learner", "backbone"), cases())
def test_contract(learner, backbone, lotka_volterra):
    check_learner(learner, backbone, lotka_volterra[0])


@pytest.mark.parametrize("learner", [*learner_names(), EXAMPLE])
def test_train_and_evaluate_cell_writes_metrics(learner, tmp_path, lotka_volterra):
    check_cell(learner, lotka_volterra[0], tmp_path)


def test_a_broken_learner_fails_the_contract(tmp_path, lotka_volterra):
    """`mixer test-learner` on a learner whose training does nothing: FAIL, exit status 1."""
    (tmp_path / "lazy.py").write_text(
        "from meanfield import MeanField\n"
        "from mixer.training import TrainLog\n\n"
        "class Lazy(MeanField):\n"
        "    def fit(self, batch, checkpoint=None):  # logs outer steps, trains nothing\n"
        "        return TrainLog(rows=[{'outer_step': i + 1, 'loss': 1.0} for i in range(3)])\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(EXAMPLES)])}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mixer.cli",
            "test-learner",
            "lazy:Lazy",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAIL contract: ContractError: 3 outer steps did not lower the loss" in run.stdout
    assert "PASS train + evaluate a cell" in run.stdout
    good = subprocess.run(
        [sys.executable, "-m", "mixer.cli", "test-learner", EXAMPLE, "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert good.returncode == 0 and good.stdout.count("PASS") == 2, good.stdout + good.stderr
