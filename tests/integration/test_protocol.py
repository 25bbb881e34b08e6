"""The protocol never looks at test data: training and adaptation run without the test and
adaptation-query files, and choices made from data use the validation split."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from mixer.config import resolve_cell
from mixer.data import load_dataset
from mixer.errors import DatasetError
from mixer.stages.evaluate import load_model
from mixer.stages.train import build_learner, train_cell
from tests.helpers import cpu_batch, validated_copy

CONFIG = {
    "training": {"outer_steps": 2, "n_ctx": 2, "n_model": 2},
    "adaptation": {"steps": 5},
    "methods": {
        "mixer": {"learner": "mixer", "n_experts": 3, "context_dim": 3, "split_context": False,
                  "width": 8, "depth": 1, "gate_every": 2}
    },
    "device": "cpu",
}  # fmt: skip


def test_training_and_adaptation_run_without_test_and_query_files(tmp_path, lotka_volterra):
    data = tmp_path / "lv"
    shutil.copytree(lotka_volterra[0], data)
    (data / "test.npz").write_bytes(b"unreadable")
    (data / "adapt_query.npz").unlink()
    with pytest.raises(DatasetError, match=r"test\.npz"):
        load_dataset(data)  # everything: the broken files are noticed ...
    cell = resolve_cell(validated_copy(CONFIG), "lv", "default", "mixer", 0)
    state = train_cell(cell, data, tmp_path / "run")  # ... but training never opens them
    assert state["status"] == "ok"

    seen = load_dataset(data, splits=("train", "adapt_support"))
    learner, _ = build_learner(cell, seen, torch.device("cpu"), 0)
    learner.load_state_dict(load_model(tmp_path / "run" / "model.pt")["learner"])
    support = cpu_batch(seen, "adapt_support")
    adapted = learner.adapt(support)  # adaptation reads the support split only
    assert adapted.shape == (support.n_envs, 3) and torch.isfinite(adapted).all()


def test_a_partial_load_still_checks_what_it_reads(tmp_path, lotka_volterra):
    data = tmp_path / "lv"
    shutil.copytree(lotka_volterra[0], data)
    other = tmp_path / "other"
    shutil.copytree(lotka_volterra[0], other)
    # train.npz of another generation would pass the format checks: the split hash catches it.
    with np.load(data / "train.npz") as arrays:
        edited = {k: arrays[k] for k in arrays.files}
    edited["X"] = edited["X"] + 1e-3
    np.savez(data / "train.npz", **edited)
    with pytest.raises(DatasetError, match="content hash does not match"):
        load_dataset(data, splits=("train", "val"))
    assert load_dataset(other, splits=("train", "val"))["train"].X.shape[0] == 9


def test_dense_moe_steps_every_expert_that_gets_a_gradient(lv):
    config = validated_copy(
        {**CONFIG, "methods": {"m": {**CONFIG["methods"]["mixer"], "learner": "moe-gd",
                                     "dense": True}}}
    )  # fmt: skip
    cell = resolve_cell(config, "lv", "default", "m", 0)
    learner, train = build_learner(cell, lv, torch.device("cpu"), 0)
    before = [p.detach().clone() for p in learner.model.experts.parameters()]
    learner.cfg["training"] = {**learner.cfg["training"], "outer_steps": 1}
    learner.fit(train)
    for old, new in zip(before, learner.model.experts.parameters(), strict=True):
        moved = (new.detach() - old).flatten(1).abs().amax(dim=1)  # per expert
        assert (moved > 0).all(), moved


def test_coda_clips_the_gradient_norm_like_its_code(lv, monkeypatch):
    import mixer.training.loops

    seen = []
    original = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, **kwargs):
        params = list(params)
        original(params, max_norm, **kwargs)
        seen.append(
            (
                max_norm,
                torch.linalg.vector_norm(
                    torch.stack(
                        [torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]
                    )
                ).item(),
            )
        )
        return None

    monkeypatch.setattr(mixer.training.loops.torch.nn.utils, "clip_grad_norm_", spy)
    config = validated_copy({**CONFIG, "methods": {"c": {"learner": "coda", "width": 8}}})
    cell = resolve_cell(config, "lv", "default", "c", 0)
    learner, train = build_learner(cell, lv, torch.device("cpu"), 0)
    learner.fit(train)
    assert len(seen) == 2 * (2 + 2)  # every step of the 2 outer steps
    assert all(max_norm == 1.0 and norm <= 1.0 + 1e-5 for max_norm, norm in seen)


def test_adaptation_weighs_the_context_penalty_as_training_does():
    """Rows' MSE averaged (as in training): the optimum of mean_r (ξ_r - 1)² + λ Σ_r ξ_r² is
    ξ = 1 / (1 + R λ); summing the MSE would give 1 / (1 + λ)."""
    from mixer.training.adaptation import fit_new_contexts
    from mixer.training.batches import EnvBatch

    rows, lam = 4, 0.25
    support = EnvBatch(torch.ones(rows, 1, 1, 1), torch.zeros(rows, 1), np.arange(rows),
                       np.zeros(rows, dtype=int))  # fmt: skip

    def trajectories_of(ctx):
        return ctx.view(rows, 1, 1, 1)

    cfg = {"steps": 2000, "lr": 0.002, "optimizer": "adam", "init": "zeros"}
    ctx, _ = fit_new_contexts(trajectories_of, torch.zeros(rows, 1), support, cfg, [], lam)
    assert torch.allclose(ctx, torch.full((rows, 1), 1 / (1 + rows * lam)), atol=0.02)
