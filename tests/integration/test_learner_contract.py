"""Every registered learner (and the README's example) meets the Learner contract on a tiny
Lotka-Volterra task. The list comes from the registry: a new learner is tested as it lands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mixer.cells import resolve_cell
from mixer.evaluate import evaluate_cell
from mixer.methods import learner_class, learner_names, learner_spec
from mixer.train import train_cell
from tests.helpers import cpu_batch, validated_copy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE = "meanfield:MeanField"
# Small settings, applied to the keys a learner declares (the others keep their defaults).
SMALL = {
    "width": 16,
    "depth": 1,
    "context_dim": 3,
    "n_experts": 3,
    "split_context": False,
    "gate_every": 3,
    "cavia_inner_lr": 0.1,
    "cavia_inner_steps_test": 5,
    "latent_dim": 4,
}


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


def tiny_config(learner: str, backbone: str | None) -> dict:
    declared = learner_spec(learner).keys(backbone)
    entry = {"learner": learner, **{k: v for k, v in SMALL.items() if k in declared}}
    if backbone is not None:
        entry["backbone"] = backbone
    config = {
        "training": {"outer_steps": 3, "n_ctx": 3, "n_model": 3, "lr_ctx": 1e-2, "lr_model": 3e-3},
        "adaptation": {"steps": 10},
        "methods": {"m": entry},
        "device": "cpu",
    }
    return validated_copy(config)


def _mse(pred, batch) -> float:
    return float((pred - batch.X).square().mean())


@pytest.mark.parametrize(("learner", "backbone"), cases())
def test_contract(learner, backbone, lv):
    cfg = resolve_cell(tiny_config(learner, backbone), "lv", "default", "m", 0)
    train = cpu_batch(lv, "train", trajectories=2)
    model = learner_class(learner)(cfg, 2, train.n_envs, torch.device("cpu"), seed=0)
    torch.manual_seed(0)
    before = model.loss(train).item()
    log = model.fit(train)
    assert len(log.rows) == 3 and model.loss(train).item() < before
    contexts = model.contexts()
    assert contexts.shape[0] == train.n_envs
    pred = model.predict(train)
    assert pred.shape == train.X.shape and torch.isfinite(pred).all()
    routing = model.routing()
    assert routing is None or (routing.shape == (train.n_envs,) and int(routing.max()) < 3)

    support = cpu_batch(lv, "adapt_support")
    adapted = model.adapt(support)
    assert adapted.shape == (support.n_envs, contexts.shape[1])
    if contexts.shape[1]:  # adapting must beat the zero context on the support data
        zero = torch.zeros_like(adapted)
        assert _mse(model.predict(support, adapted), support) < _mse(
            model.predict(support, zero), support
        )

    # A restored learner predicts exactly what the trained one does.
    copy = learner_class(learner)(cfg, 2, train.n_envs, torch.device("cpu"), seed=1)
    copy.load_state_dict(model.state_dict())
    assert torch.equal(copy.predict(train), model.predict(train))


@pytest.mark.parametrize("learner", [*learner_names(), EXAMPLE])
def test_train_and_evaluate_cell_writes_metrics(learner, tmp_path, lotka_volterra):
    config = tiny_config(learner, None)
    config["training"]["outer_steps"] = 2
    cell = resolve_cell(config, "lv", "default", "m", 0)
    state = train_cell(cell, lotka_volterra[0], tmp_path)
    assert state["status"] == "ok"
    metrics = evaluate_cell(tmp_path / "model.pt", lotka_volterra[0], tmp_path / "metrics.json")
    assert metrics["learner"] == learner and metrics["method"] == "m"
    assert np.isfinite(metrics["mse_id"]) and np.isfinite(metrics["mse_ood"])
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert len(written["contexts"]) == len(written["per_env"]["id"]["env_id"])
