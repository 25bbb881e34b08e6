"""Training's validation trace and its best-on-val state (``val_every``), and the constant
learning-rate schedule (``lr_schedule``): what the reproduce runs report beside the final model."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from mixer.config import resolve_cell
from mixer.stages.evaluate import evaluate_cell
from mixer.stages.train import train_cell
from tests.helpers import validated_copy
from tests.integration.test_baselines import TINY


@pytest.fixture(scope="module")
def config():
    raw = {**TINY, "methods": {**TINY["methods"], "mixer": {"learner": "mixer", "width": 16}}}
    return validated_copy(raw)


def _cell(config, method, **training):
    cfg = resolve_cell(config, "lv", "default", method, 0)
    cfg["training"].update(training)
    return {**cfg, "seed": 0}


def _log(folder):
    with open(folder / "train_log.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("method", ["coda", "cavia", "ncf", "mixer"])
def test_the_state_of_lowest_validation_error_is_kept_and_scored(
    method, tmp_path, config, lotka_volterra
):
    # A large model learning rate makes the validation error move between outer steps.
    cell = _cell(config, method, outer_steps=4, val_every=1, lr_model=3e-2)
    train_cell(cell, lotka_volterra[0], tmp_path)
    rows = _log(tmp_path)
    logged = [float(row["mse_val"]) for row in rows]
    assert len(logged) == 4 and all(math.isfinite(v) for v in logged)
    model = torch.load(tmp_path / "model.pt", weights_only=True)
    best = model["best_val"]
    assert best["outer_step"] == 1 + logged.index(min(logged))
    assert best["mse_val"] == pytest.approx(min(logged), rel=1e-6)
    assert best["inner_steps"] == int(rows[best["outer_step"] - 1]["inner_steps"])

    metrics = evaluate_cell(tmp_path / "model.pt", lotka_volterra[0], tmp_path / "m.json")
    # Evaluation scores the kept state, not the final one: its validation MSE is the logged
    # minimum, the final model's is the last logged value.
    assert metrics["best_val"]["mse_val"] == pytest.approx(min(logged), rel=1e-4)
    assert metrics["mse_val"] == pytest.approx(logged[-1], rel=1e-4)
    assert set(metrics["best_val"]) >= {"outer_step", "mse_id", "mse_ood", "rel_mse_id"}


def test_validation_every_k_steps_and_after_the_last(tmp_path, config, lotka_volterra):
    train_cell(_cell(config, "coda", outer_steps=5, val_every=2), lotka_volterra[0], tmp_path)
    scored = [row["outer_step"] for row in _log(tmp_path) if row["mse_val"]]
    assert scored == ["2", "4", "5"]


def test_without_validation_nothing_is_kept(tmp_path, config, lotka_volterra):
    train_cell(_cell(config, "coda", outer_steps=2), lotka_volterra[0], tmp_path)
    assert "mse_val" not in _log(tmp_path)[0]
    assert torch.load(tmp_path / "model.pt", weights_only=True)["best_val"] is None
    metrics = evaluate_cell(tmp_path / "model.pt", lotka_volterra[0], tmp_path / "m.json")
    assert "best_val" not in metrics


@pytest.mark.parametrize(
    ("schedule", "expected"), [("constant", [1, 1, 1]), ("step", [1, 0.4, 0.16])]
)
def test_learning_rate_schedule(schedule, expected, tmp_path, config, lotka_volterra):
    for method in ("coda", "ncf"):  # the joint and the alternating loop
        cell = _cell(config, method, outer_steps=3, lr_schedule=schedule)
        train_cell(cell, lotka_volterra[0], tmp_path / method)
        rates = [float(row["lr_model"]) for row in _log(tmp_path / method)]
        assert rates == pytest.approx([3e-3 * f for f in expected])


def test_a_resumed_run_keeps_its_best_state(tmp_path, config, lotka_volterra):
    """The best-on-val state travels in the checkpoint: a run stopped and resumed keeps the
    one an uninterrupted run keeps."""
    cell = _cell(config, "coda", outer_steps=4, val_every=1, lr_model=3e-2, checkpoint_every=1)
    train_cell(cell, lotka_volterra[0], tmp_path / "full")
    full = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["best_val"]

    from mixer.training import bookkeeping

    original, calls = bookkeeping.maybe_checkpoint, {"n": 0}

    def stop_after_two(*args, **kwargs):
        original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    bookkeeping.maybe_checkpoint = stop_after_two
    try:
        with pytest.raises(KeyboardInterrupt):
            train_cell(cell, lotka_volterra[0], tmp_path / "part")
    finally:
        bookkeeping.maybe_checkpoint = original
    train_cell(cell, lotka_volterra[0], tmp_path / "part")
    resumed = torch.load(tmp_path / "part" / "model.pt", weights_only=True)["best_val"]
    assert resumed["outer_step"] == full["outer_step"]
    assert resumed["mse_val"] == pytest.approx(full["mse_val"], rel=1e-6)
