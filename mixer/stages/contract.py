"""The Learner contract, checked on a tiny Lotka-Volterra task: what the suite's own tests run
on every built-in learner and ``mixer test-learner package.module:Class`` runs on yours.

Each check trains for a few steps only: it proves the hooks fit together (training lowers the
loss, shapes, adaptation beats the zero context, a restored learner predicts the same, a cell
trains and scores through the workflow's own stages), not that the learner is any good.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mixer.config import resolve_cell, validate_config, validate_dataset_spec
from mixer.data import generate, load_dataset, save_dataset
from mixer.methods.catalog import learner_class, learner_spec
from mixer.training.batches import make_batch

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
TINY_LV = {
    "generator": "ode",
    "systems": ["lotka_volterra"],
    "trajectories": {"train": 3, "val": 2, "test": 4, "adapt_support": 1, "adapt_query": 3},
}


class ContractError(AssertionError):
    """A learner breaks the contract; the message says which part."""


def _require(ok, message: str) -> None:
    if not ok:
        raise ContractError(message)


def tiny_dataset(folder: Path) -> Path:
    """Generate the tiny Lotka-Volterra dataset into ``folder`` (once) and return it."""
    if not (folder / "meta.json").is_file():
        spec = validate_dataset_spec("lv", json.loads(json.dumps(TINY_LV)))
        splits, envs, extra = generate(spec)
        save_dataset(folder, splits, envs, {"dataset": "lv", "generator": spec, **extra})
    return folder


def tiny_config(learner: str, backbone: str | None, outer_steps: int = 3) -> dict:
    """A validated config with one method ``m`` of ``learner`` at the small settings."""
    declared = learner_spec(learner).keys(backbone)
    entry = {"learner": learner, **{k: v for k, v in SMALL.items() if k in declared}}
    if backbone is not None:
        entry["backbone"] = backbone
    config = {
        "training": {"outer_steps": outer_steps, "n_ctx": 3, "n_model": 3},
        "adaptation": {"steps": 10},
        "methods": {"m": entry},
        "device": "cpu",
    }
    config["training"].update(lr_ctx=1e-2, lr_model=3e-3)
    return validate_config(config)


def _batch(dataset, split: str, trajectories: int | None = None):
    return make_batch(dataset, split, {}, torch.device("cpu"), trajectories=trajectories)


def _mse(pred, batch) -> float:
    return float((pred - batch.X).square().mean())


def check_learner(learner: str, backbone: str | None, dataset_dir: Path) -> None:
    """Train, predict, route, adapt and restore ``learner`` on the tiny dataset."""
    cfg = resolve_cell(tiny_config(learner, backbone), "lv", "default", "m", 0)
    dataset = load_dataset(dataset_dir)
    train = _batch(dataset, "train", trajectories=2)
    cls = learner_class(learner)
    model = cls(cfg, 2, train.n_envs, torch.device("cpu"), seed=0)
    torch.manual_seed(0)
    before = model.loss(train).item()
    log = model.fit(train)
    steps = 3 if cls.trains else 0  # a reference predictor only computes statistics
    _require(len(log.rows) == steps, f"fit() logged {len(log.rows)} outer steps, not {steps}")
    after = model.loss(train).item()
    _require(
        after < before or not cls.trains,
        f"3 outer steps did not lower the loss ({before:.4g} -> {after:.4g})",
    )
    contexts = model.contexts()
    _require(contexts.shape[0] == train.n_envs, f"contexts() has {contexts.shape[0]} rows")
    pred = model.predict(train)
    _require(pred.shape == train.X.shape, f"predict() shape {tuple(pred.shape)}")
    _require(bool(torch.isfinite(pred).all()), "predict() is not finite")
    routing = model.routing()
    _require(
        routing is None or (routing.shape == (train.n_envs,) and int(routing.max()) < 3),
        "routing() must be None or one expert index < n_experts per environment",
    )
    support = _batch(dataset, "adapt_support")
    adapted = model.adapt(support)
    _require(adapted.shape == (support.n_envs, contexts.shape[1]), "adapt() shape")
    if contexts.shape[1]:
        zero = torch.zeros_like(adapted)
        gain = _mse(model.predict(support, adapted), support)
        _require(gain < _mse(model.predict(support, zero), support), "adapt() beats no context")
    copy = cls(cfg, 2, train.n_envs, torch.device("cpu"), seed=1)
    copy.load_state_dict(model.state_dict())
    _require(torch.equal(copy.predict(train), model.predict(train)), "restored != trained")


def check_cell(learner: str, dataset_dir: Path, out_dir: Path) -> dict:
    """``mixer train`` and ``mixer evaluate``'s code on one cell; returns its metrics."""
    from mixer.stages.evaluate import evaluate_cell
    from mixer.stages.train import train_cell

    cell = resolve_cell(tiny_config(learner, None, outer_steps=2), "lv", "default", "m", 0)
    state = train_cell(cell, dataset_dir, out_dir, force=True)  # a scratch folder
    _require(state["status"] == "ok", f"training ended {state['status']}: {state.get('reason')}")
    metrics = evaluate_cell(out_dir / "model.pt", dataset_dir, out_dir / "metrics.json")
    _require(metrics["learner"] == learner and metrics["method"] == "m", "metrics' identity")
    _require(np.isfinite(metrics["mse_id"]) and np.isfinite(metrics["mse_ood"]), "errors NaN")
    written = json.loads((out_dir / "metrics.json").read_text())
    _require(len(written["contexts"]) == len(written["per_env"]["id"]["env_id"]), "contexts")
    return metrics


def run_contract(learner: str, workdir: Path, say: Callable[[str], None] = print) -> bool:
    """Every check on ``learner`` (each backbone it runs); says PASS/FAIL per check."""
    dataset = tiny_dataset(workdir / "lv")
    checks = [
        (
            f"contract{f' (backbone {b})' if b else ''}",
            lambda b=b: check_learner(learner, b, dataset),
        )
        for b in learner_spec(learner).backbones or [None]
    ]
    checks.append(
        ("train + evaluate a cell", lambda: check_cell(learner, dataset, workdir / "cell"))
    )
    passed = True
    for name, check in checks:
        try:
            check()
            say(f"PASS {name}")
        except Exception as err:  # a user's class may fail in any way: report, go on
            passed = False
            say(f"FAIL {name}: {type(err).__name__}: {err}")
    return passed
