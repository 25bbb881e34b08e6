"""The PL-RNN backbone inside the learners, on a tiny control-charts task, and its cell files."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from mixer.config import resolve_cell, validate_config
from mixer.data import load_dataset
from mixer.errors import ConfigError
from mixer.methods import learner_class
from mixer.stages.evaluate import evaluate_cell
from mixer.stages.train import train_cell
from mixer.training.batches import EnvBatch, make_batch
from tests.helpers import validated_copy

PLRNN = {"backbone": "plrnn", "width": 8, "latent_dim": 4, "context_dim": 3, "tf_alpha": 0.3}
TINY = {
    "training": {
        "outer_steps": 3,
        "n_ctx": 2,
        "n_model": 2,
        "lr_ctx": 1e-2,
        "lr_model": 1e-2,
        "checkpoint_every": 0,
    },
    "adaptation": {"steps": 5},
    "methods": {
        "mixer": {"learner": "mixer", "n_experts": 3, "split_context": False, "gate_every": 2},
        "moe-gd": {"learner": "moe-gd", "n_experts": 3, "split_context": False},
        "single": {"learner": "single"},
        "coda": {"learner": "coda"},
        "mixer-annealed": {
            "learner": "mixer",
            "n_experts": 3,
            "split_context": False,
            "gate_every": 2,
            "tf_alpha_end": 0.9,
        },
    },
    "device": "cpu",
}
for _entry in TINY["methods"].values():
    for _key, _value in PLRNN.items():
        _entry.setdefault(_key, _value)


@pytest.fixture(scope="module")
def config():
    return validated_copy(TINY)


@pytest.fixture(scope="module")
def charts(control_charts):
    return load_dataset(control_charts[0])


def _learner(config, method, n_envs):
    cfg = resolve_cell(config, "cc", "default", method, 0)
    return learner_class(cfg["learner"])(cfg, 1, n_envs, torch.device("cpu"), seed=0)


@pytest.mark.parametrize("method", ["mixer", "moe-gd", "single", "coda"])
def test_plrnn_trains_and_adapts_in_every_learner(method, config, charts):
    train = make_batch(charts, "train", {}, torch.device("cpu"))
    learner = _learner(config, method, train.n_envs)
    assert learner.model.experts.name == "plrnn"
    before = learner.loss(train).item()
    log = learner.fit(train)
    after = learner.loss(train).item()
    assert after < before, (before, after)
    assert {"tf_alpha", "loss_tf", "mse_free"} <= set(log.rows[-1])
    pred = learner.predict(train)
    assert pred.shape == train.X.shape and torch.equal(pred[:, :, 0], train.X[:, :, 0])
    support = make_batch(charts, "adapt_support", {}, torch.device("cpu"))
    support = support.subset(torch.arange(0, support.n_envs, 35))  # one per class
    alpha = learner.final_tf_alpha()

    def support_loss(contexts):
        with torch.no_grad():
            pred = learner.model.trajectories(
                contexts, support.x0, support.t, data=support.X, alpha=alpha
            )
        return (pred - support.X).square().mean()

    adapted = learner.adapt(support)
    assert adapted.shape == (support.n_envs, 3)
    assert support_loss(adapted) < support_loss(torch.zeros_like(adapted))
    scores = learner.sequence_losses(train)
    assert set(scores) == {"loss_tf", "mse_free"}


@pytest.mark.parametrize("method", ["mixer", "single"])
def test_a_series_forecast_runs_on_from_the_end_of_its_history(method, config, charts):
    train = make_batch(charts, "train", {}, torch.device("cpu"))
    test = make_batch(charts, "test", {}, torch.device("cpu"))
    learner = _learner(config, method, train.n_envs)
    learner.fit(train)
    forecast = learner.forecast(train, test)
    assert forecast.shape == test.X.shape
    # The query values are never read: other values give the same forecast.
    noise = EnvBatch(torch.randn_like(test.X), test.t, test.env_id, test.family)
    assert torch.equal(learner.forecast(train, noise), forecast)
    # Its first point is the model run over the history teacher-forced at the final α (every
    # step reads a history sample), one step further: the latent state is carried, not reset
    # from the first query sample as predict(test) does.
    n_past = train.X.shape[2]
    grid = torch.cat([train.t, test.t[:, :1]], dim=1)
    data = torch.cat([train.X, torch.zeros_like(test.X[:, :, :1])], dim=2)
    with torch.no_grad():
        by_hand = learner.model.trajectories(
            learner.contexts(), train.x0, grid, data=data, alpha=learner.final_tf_alpha()
        )
    torch.testing.assert_close(forecast[:, :, 0], by_hand[:, :, n_past], rtol=1e-6, atol=1e-6)
    # The whole history counts, not only its last sample.
    early = train.X.clone()
    early[:, :, 0] += 1.0
    shifted = EnvBatch(early, train.t, train.env_id, train.family)
    assert not torch.allclose(learner.forecast(shifted, test), forecast)


def test_mixer_with_plrnn_refits_its_gate_from_the_batched_loss_matrix(config, charts):
    train = make_batch(charts, "train", {}, torch.device("cpu"))
    learner = _learner(config, "mixer", train.n_envs)
    learner.fit(train)
    assert learner.refits_done >= 1


def test_teacher_forcing_is_annealed_over_outer_steps(config, charts):
    train = make_batch(charts, "train", {}, torch.device("cpu"))
    learner = _learner(config, "mixer-annealed", train.n_envs)
    log = learner.fit(train)
    assert [row["tf_alpha"] for row in log.rows] == pytest.approx([0.3, 0.6, 0.9])
    assert learner.final_tf_alpha() == pytest.approx(0.9)


def test_ode_learners_log_no_sequence_columns(config, charts):
    cfg = resolve_cell(config, "cc", "default", "single", 0)
    cfg["backbone"] = "geps"
    train = make_batch(charts, "train", {}, torch.device("cpu")).subset(torch.arange(6))
    learner = learner_class("single")(cfg, 1, train.n_envs, torch.device("cpu"), seed=0)
    cfg["training"]["outer_steps"] = 1
    log = learner.fit(train)
    assert "loss_tf" not in log.rows[0] and learner.sequence_losses(train) == {}


@pytest.mark.parametrize("method", ["mixer", "coda"])
def test_plrnn_cell_writes_sequence_and_classification_metrics(
    method, tmp_path, config, control_charts
):
    cfg = resolve_cell(config, "cc", "default", method, 0)
    train_cell({**cfg, "seed": 0}, control_charts[0], tmp_path)
    with open(tmp_path / "train_log.csv") as handle:
        columns = next(csv.reader(handle))
    assert {"loss", "loss_tf", "mse_free", "tf_alpha"} <= set(columns)
    metrics = evaluate_cell(tmp_path / "model.pt", control_charts[0], tmp_path / "metrics.json")
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == on_disk["status"] == "ok"
    assert on_disk["backbone"] == "plrnn"
    keys = {
        "loss_tf",
        "mse_free",
        "loss_tf_ood",
        "mse_free_ood",
        "svm_context_accuracy",
        "svm_raw_accuracy",
        "context_kmeans_ari_superclass",
    }
    if method == "mixer":
        keys |= {"routing_ari_superclass", "routing_nmi_superclass", "routing_ari"}
    assert keys <= set(on_disk), keys - set(on_disk)
    # mse_id forecasts the query part from the end of the training part (latent state
    # carried); mse_free runs the query part on its own, from its first sample: they differ.
    assert on_disk["mse_free"] != pytest.approx(on_disk["mse_id"], rel=1e-3)
    assert 0.0 <= on_disk["svm_context_accuracy"] <= 1.0
    assert 0.0 <= on_disk["svm_raw_accuracy"] <= 1.0


@pytest.mark.parametrize("learner", ["ncf", "cavia", "one-for-all"])
def test_fixed_architecture_baselines_reject_plrnn(learner):
    bad = json.loads(json.dumps(TINY))
    bad["methods"] = {"x": {"learner": learner, "backbone": "plrnn"}}
    bad["datasets"] = {"lv": {"generator": "ode", "systems": ["lotka_volterra"]}}
    bad["experiments"] = [{"datasets": ["lv"], "methods": ["x"]}]
    with pytest.raises(ConfigError, match=f"learner '{learner}' does not run backbone 'plrnn'"):
        validate_config(bad)
    bad["methods"]["x"] = {"learner": "mixer", "backbone": "lstm"}
    with pytest.raises(ConfigError, match=r"methods\.x\.backbone: .*'lstm' \(it runs: .*plrnn"):
        validate_config(bad)
