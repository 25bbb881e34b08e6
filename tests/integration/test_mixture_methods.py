"""Contract of the mixture learners on a tiny Lotka-Volterra task, and the run lifecycle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mixer.config import resolve_cell, resolve_method, validate_config
from mixer.errors import ConfigError
from mixer.methods import learner_class
from mixer.stages.evaluate import evaluate_cell
from mixer.stages.train import train_cell
from tests.helpers import cpu_batch, validated_copy

TINY = {
    "training": {"outer_steps": 3, "n_ctx": 3, "n_model": 3, "lr_ctx": 1e-2, "lr_model": 3e-3},
    "adaptation": {"steps": 15},
    "methods": {
        name: {
            "learner": name,
            "backbone": backbone,
            "n_experts": 3,
            "context_dim": 3,
            "width": 16,
            "depth": 1,
            "gate_every": 3,
        }
        for name, backbone in (
            ("mixer", "geps"),
            ("mixer-faithful", "coda"),
            ("moe-gd", "ncf"),
            ("moe-frozen", "geps"),
            ("single", "coda"),
        )
    },
    "device": "cpu",
}


@pytest.fixture(scope="module")
def config():
    return validated_copy(TINY)


def test_mixer_refits_and_faithful_variant_counts_its_skips(config, lv):
    train = cpu_batch(lv, "train", trajectories=2)
    counts = {}
    for method in ("mixer", "mixer-faithful"):
        cfg = resolve_cell(config, "lv", "default", method, 0)
        learner = learner_class(cfg["learner"])(cfg, 2, train.n_envs, torch.device("cpu"), seed=0)
        learner.fit(train)
        counts[method] = learner.counters()
    total = 3 * (3 + 3) // 3  # one refit every gate_every = 3 inner steps
    for c in counts.values():
        assert c["refits_done"] + c["refits_skipped"] == total
    assert counts["mixer"]["refits_done"] >= 1


def test_same_seed_gives_identical_metrics_and_resume_continues(tmp_path, config, lotka_volterra):
    cfg = resolve_cell(config, "lv", "default", "mixer", 0)
    cfg["training"]["checkpoint_every"] = 1
    runs = []
    for name in ("a", "b"):
        train_cell({**cfg, "seed": 0}, lotka_volterra[0], tmp_path / name)
        runs.append(
            evaluate_cell(
                tmp_path / name / "model.pt", lotka_volterra[0], tmp_path / name / "m.json"
            )
        )
    for key in ("mse_id", "mse_ood", "rel_mse_id", "routing_purity", "refits_done"):
        assert runs[0][key] == runs[1][key], key

    # Kill a run after its first checkpoint, then restart it: it must continue, not start over.
    from mixer.methods.mixture import MixtureLearner

    calls = {"n": 0}
    original = MixtureLearner.loss

    def dying_loss(self, batch, envs=None):
        calls["n"] += 1
        if calls["n"] == 6 + 2:  # inside outer step 2, after checkpoint 1 was written
            raise KeyboardInterrupt
        return original(self, batch, envs)

    MixtureLearner.loss = dying_loss
    try:
        with pytest.raises(KeyboardInterrupt):
            train_cell({**cfg, "seed": 0}, lotka_volterra[0], tmp_path / "c")
    finally:
        MixtureLearner.loss = original
    assert (tmp_path / "c" / "checkpoint.pt").is_file()
    calls_before = {"n": 0}

    def counting_loss(self, batch, envs=None):
        calls_before["n"] += 1
        return original(self, batch, envs)

    MixtureLearner.loss = counting_loss
    try:
        state = train_cell({**cfg, "seed": 0}, lotka_volterra[0], tmp_path / "c")
    finally:
        MixtureLearner.loss = original
    assert state["outer_steps"] == 3
    assert calls_before["n"] == 2 * 6  # two remaining outer steps of 3 + 3 inner steps
    assert not (tmp_path / "c" / "checkpoint.pt").exists()
    resumed = evaluate_cell(
        tmp_path / "c" / "model.pt", lotka_volterra[0], tmp_path / "c" / "m.json"
    )
    assert resumed["mse_id"] == pytest.approx(runs[0]["mse_id"], rel=1e-5)


def test_divergence_is_a_status_not_a_crash(tmp_path, config, lotka_volterra):
    cfg = resolve_cell(config, "lv", "default", "single", 0)
    cfg["training"]["lr_model"] = 1e6  # blows the rollout up within a few steps
    cfg["training"]["lr_ctx"] = 1e6
    state = train_cell({**cfg, "seed": 0}, lotka_volterra[0], tmp_path)
    assert state["status"] == "diverged" and "loss became" in state["reason"]
    metrics = evaluate_cell(tmp_path / "model.pt", lotka_volterra[0], tmp_path / "metrics.json")
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == on_disk["status"] == "diverged"
    assert "mse_id" not in on_disk
    assert (tmp_path / "routing.npz").is_file() and (tmp_path / "train_log.csv").is_file()


def test_bad_method_configs_are_rejected(config, lv):
    bad = json.loads(json.dumps(TINY))
    bad["methods"]["mixer"]["learner"] = "mixr"
    bad["datasets"] = {"lv": {"generator": "ode", "systems": ["lotka_volterra"]}}
    bad["experiments"] = [{"datasets": ["lv"], "methods": ["mixer"]}]
    with pytest.raises(
        ConfigError, match=r"unknown learner 'mixr'\. Valid names: .*moe-gd.*--write-catalog"
    ):
        validate_config(bad)
    bad = json.loads(json.dumps(TINY))
    bad["methods"]["mixer"]["context_dim"] = 5
    bad["datasets"] = {"lv": {"generator": "ode", "systems": ["lotka_volterra"]}}
    bad["experiments"] = [{"datasets": ["lv"], "methods": ["mixer"]}]
    with pytest.raises(ConfigError, match="context_dim 5 is not divisible by n_experts 3"):
        validate_config(bad)
    cfg = resolve_cell(config, "lv", "default", "mixer", 0)
    cfg["n_experts"], cfg["context_dim"] = 10, 10
    with pytest.raises(ConfigError, match="K=10 experts but only 9 training environments"):
        learner_class("mixer")(cfg, 2, 9, torch.device("cpu"), seed=0)
    with pytest.raises(
        ConfigError, match=r"unknown backbone 'resnet'\. Valid names: ncf, coda, geps, plrnn"
    ):
        from mixer.models import backbone_class

        backbone_class("resnet")


def test_context_dim_per_expert_scales_with_the_regimes_k(config):
    cfg = json.loads(json.dumps(config))
    cfg["methods"]["mixer"].update(split_context=True, context_dim_per_expert=2)
    cfg["regimes"]["k5"] = {"n_experts": 5}
    assert (
        resolve_method(cfg, "mixer", "default")["context_dim"]
        == 2 * cfg["methods"]["mixer"]["n_experts"]
    )
    assert resolve_method(cfg, "mixer", "k5")["context_dim"] == 10
    cfg["methods"]["mixer"]["split_context"] = False  # without a split it is not used
    assert (
        resolve_method(cfg, "mixer", "k5")["context_dim"] == cfg["methods"]["mixer"]["context_dim"]
    )


def test_routing_trace_is_saved_every_outer_step(tmp_path, config, lotka_volterra):
    cfg = resolve_cell(config, "lv", "default", "moe-gd", 0)
    train_cell({**cfg, "seed": 1}, lotka_volterra[0], tmp_path)
    trace = np.load(tmp_path / "routing.npz")
    assert trace["routing"].shape == (3, 9)
    np.testing.assert_array_equal(trace["family"], [0, 1, 2] * 3)


def test_warmup_clone_routes_to_one_expert_then_copies_it_into_all(config, lv):
    cfg = resolve_cell(config, "lv", "default", "mixer", 0)
    cfg["gate_warmup"], cfg["gate_warmup_clone"] = 6, True  # first refit at inner step 9
    train = cpu_batch(lv, "train", trajectories=2)
    learner = learner_class("mixer")(cfg, 2, train.n_envs, torch.device("cpu"), seed=0)
    stacked = list(learner.model.experts.parameters())
    assert not torch.equal(stacked[0][0], stacked[0][1])  # distinct random experts at init
    # Whatever the contexts, the warm-up gate sends every environment to expert 0.
    assert learner.routing(10 * torch.randn(train.n_envs, 3)).eq(0).all()

    seen = {}
    original = learner.refit_gate

    def watched_refit(batch):
        before = [p.detach()[0].clone() for p in stacked]
        original(batch)
        if learner.refits_done == 1 and not seen:
            seen["ancestor"] = before
            seen["after"] = [p.detach().clone() for p in stacked]
            opt = learner._opt_model
            seen["moments"] = [opt.state[p] for p in stacked]
            seen["moments"] = [{k: v.clone() for k, v in s.items()} for s in seen["moments"]]

    learner.refit_gate = watched_refit
    log = learner.fit(train)
    assert log.routing[0] == [0] * train.n_envs  # outer step 1 is all warm-up
    assert seen, "no refit happened"
    for ancestor, after, moments in zip(
        seen["ancestor"], seen["after"], seen["moments"], strict=True
    ):
        for k in range(3):
            assert torch.equal(after[k], ancestor)  # every expert is the warmed-up expert 0
        assert moments["m"].abs().sum() == 0 and moments["s"].abs().sum() == 0
        assert moments["t"].eq(0).all()
    # Training goes on from there: the routed experts move away from the common ancestor.
    assert not torch.equal(stacked[0].detach()[0], seen["ancestor"][0])
