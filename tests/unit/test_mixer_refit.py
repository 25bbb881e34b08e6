"""The MixER learner applies its gate refit (docs/METHOD.md §3.2): after ``refit_gate`` every
environment is routed, by ``routing()`` and by the training loss, to the expert that the
one-to-one map gave its context cluster. The map is a 3-cycle (not its own inverse), so a
map applied backwards (expert -> cluster read as cluster -> expert) is caught too."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mixer.config import resolve_cell
from mixer.methods import learner_class
from mixer.training.batches import EnvBatch
from tests.helpers import validated_copy

torch.set_num_threads(1)

K, CHUNK, E = 3, 2, 9
# Cluster of every environment, interleaved so that the storage order says nothing.
TRUE = torch.tensor([0, 1, 2, 2, 0, 1, 1, 2, 0])
# Cluster j is served best by expert MAP[j]: a 3-cycle, whose inverse [2, 0, 1] differs from
# it on every cluster.
MAP = torch.tensor([1, 2, 0])
EXPECTED = MAP[TRUE].tolist()
INVERSE = torch.argsort(MAP)[TRUE].tolist()


CENTRES = 3.0 * torch.eye(K * CHUNK)[[0, 2, 4]]  # one axis per cluster, far apart


def clustered_contexts() -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    return CENTRES[TRUE] + 0.05 * torch.randn(E, K * CHUNK, generator=gen)


def loss_matrix() -> torch.Tensor:
    """ℓ[e, k]: 0.1 for the expert of e's cluster, 1 for the others, plus small noise."""
    gen = torch.Generator().manual_seed(4)
    loss = torch.ones(E, K) + 0.01 * torch.rand(E, K, generator=gen)
    loss[torch.arange(E), MAP[TRUE]] = 0.1
    return loss


def tiny_batch() -> EnvBatch:
    gen = torch.Generator().manual_seed(5)
    X = torch.randn(E, 2, 6, 2, generator=gen)
    t = torch.linspace(0.0, 0.5, 6).repeat(E, 1)
    return EnvBatch(X, t, np.arange(E), TRUE.numpy())


@pytest.fixture
def learner():
    raw = {
        "methods": {
            "m": {
                "learner": "mixer",
                "backbone": "geps",
                "n_experts": K,
                "context_dim_per_expert": CHUNK,
                "width": 8,
                "depth": 1,
            }
        },
        "device": "cpu",
    }
    cell = resolve_cell(validated_copy(raw), "lv", "default", "m", 0)
    mixer = learner_class("mixer")(cell, 2, E, torch.device("cpu"), seed=0)
    with torch.no_grad():
        mixer.ctx.copy_(clustered_contexts())
    # A gate that sends everything to expert 0: a refit that is not applied leaves it so.
    gate = torch.zeros_like(mixer.model.gate)
    gate[-1, 0] = 1.0
    mixer.model.set_gate(gate)
    return mixer


def test_routing_follows_the_refit_cluster_to_expert_map(learner, monkeypatch):
    batch = tiny_batch()
    assert learner.routing().tolist() == [0] * E
    calls = []

    def fake_expert_losses(contexts, x0, t, target, **kwargs):
        calls.append(contexts.shape)
        return loss_matrix()

    monkeypatch.setattr(learner.model, "expert_losses", fake_expert_losses)
    learner.refit_gate(batch)  # first refit: k-means++
    assert calls == [(E, K * CHUNK)]
    assert learner.refits_done == 1 and learner.refits_skipped == 0
    assert learner.routing().tolist() == EXPECTED
    assert learner.centroids.shape == (K, K * CHUNK)
    # A map read backwards still routes right under some numberings of the clusters (the
    # cycle itself, the transpositions), so every numbering is forced through the warm start
    # (the refit starts K-means from the previous centroids).
    for n, order in enumerate(itertools.permutations(range(K)), start=2):
        learner.centroids = CENTRES[list(order)]
        learner.model.set_gate(torch.zeros_like(learner.model.gate))  # routes all to expert 0
        learner.refit_gate(batch)
        assert learner.refits_done == n
        routing = learner.routing().tolist()
        assert routing != INVERSE, f"cluster numbering {order}: the map was applied backwards"
        assert routing == EXPECTED, order
        assert learner.gate_probabilities().argmax(dim=1).tolist() == EXPECTED


def test_training_loss_uses_the_refitted_routing(learner, monkeypatch):
    batch = tiny_batch()
    with torch.no_grad():
        real = learner.model.expert_losses(
            learner.ctx.detach(), batch.x0, batch.t, batch.X, **learner.solver
        )
    # The experts are distinct (random init), so each environment's loss says which one ran.
    chosen = real[torch.arange(E), EXPECTED]
    others = (real - chosen[:, None]).abs() + torch.nn.functional.one_hot(MAP[TRUE], K) * 1e9
    assert (others.min(dim=1).values > 1e-3 * chosen).all()
    monkeypatch.setattr(learner.model, "expert_losses", lambda *a, **k: loss_matrix())
    learner.refit_gate(batch)
    for e in range(E):
        with torch.no_grad():
            loss = learner.loss(batch, torch.tensor([e]))
        torch.testing.assert_close(loss, real[e, EXPECTED[e]], rtol=1e-4, atol=0.0)
        # Only the routed expert is trained on this step.
        assert learner.active_experts().nonzero().flatten().tolist() == [EXPECTED[e]]
