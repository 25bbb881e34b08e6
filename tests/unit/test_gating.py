"""Unit tests of the MixER gate refit (mixer/models/gating.py)."""

from __future__ import annotations

import inspect
import itertools

import numpy as np
import pytest
import torch

from mixer.errors import ConfigError
from mixer.models.gating import (
    _kmeans_pp,
    assign_clusters,
    check_refit_feasible,
    fit_gate_least_squares,
    gate_logits,
    kmeans,
    refit_gate,
    refit_gate_faithful,
    route,
)

torch.set_num_threads(1)

CENTERS = torch.tensor([[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0]], dtype=torch.float64)
OFFSETS = torch.tensor([[0.3, 0.1], [-0.2, 0.3], [0.1, -0.3], [-0.25, -0.15]], dtype=torch.float64)
# True cluster of every environment: 4 environments around each centre, in centre order.
TRUE = torch.arange(3).repeat_interleave(4)

# Median loss of expert k (column) on true cluster A, B, C (rows). The unique optimum is
# A->0, B->2, C->1 (total 4), yet every row's cheapest expert clashes with it: greedy in cluster
# order only finds it when the clusters are ordered (B, C, A).
COST = torch.tensor([[2.0, 0.0, 3.0], [6.0, 4.0, 0.0], [5.0, 2.0, 1.0]], dtype=torch.float64)
HUNGARIAN = torch.tensor([0, 2, 1])  # expert of true cluster A, B, C


def contexts(dtype=torch.float64) -> torch.Tensor:
    return (CENTERS[:, None, :] + OFFSETS[None]).reshape(12, 2).to(dtype)


def loss_matrix() -> torch.Tensor:
    gen = torch.Generator().manual_seed(123)
    loss = COST[TRUE] + 0.01 * torch.rand(12, 3, generator=gen, dtype=torch.float64)
    # One outlier per cluster: a mean would now prefer other experts, the median must not.
    loss[0, 0] = loss[4, 2] = loss[8, 1] = 100.0
    return loss


def greedy_reference(loss: torch.Tensor, labels: torch.Tensor, K: int) -> list[int]:
    """Cluster j (in index order) takes its cheapest remaining expert by median loss."""
    cost = np.array([np.median(loss[labels == j].numpy(), axis=0) for j in range(K)])
    taken: list[int] = []
    for j in range(K):
        taken.append(min((k for k in range(K) if k not in taken), key=lambda k: cost[j, k]))
    return taken


def test_gate_logits_and_route_ties_to_lowest():
    ctx = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    W = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.5, -0.5, 0.5]])
    expected = torch.cat([ctx, torch.ones(2, 1)], dim=1) @ W
    assert torch.allclose(gate_logits(W, ctx), expected)
    # Row 0: logits (1.5, 1.5, 1.5) all tie; row 1: (0.5, -0.5, 0.5), experts 0 and 2 tie.
    assert route(W, ctx).tolist() == [0, 0]
    assert route(W, ctx).dtype == torch.long
    with pytest.raises(ValueError, match="does not fit"):
        gate_logits(W[:2], ctx)


def test_refit_follows_hungarian_not_greedy():
    ctx, loss = contexts(), loss_matrix()
    result = refit_gate(ctx, loss, 3, torch.Generator().manual_seed(0))
    assert not result.skipped and result.reason == ""
    # Every environment goes to the expert the Hungarian solution gives its true cluster.
    assert route(result.gate, ctx).tolist() == HUNGARIAN[TRUE].tolist()
    assert result.cluster_to_expert[result.labels].tolist() == HUNGARIAN[TRUE].tolist()
    assert result.gate.shape == (3, 3) and result.centroids.shape == (3, 2)

    faithful = refit_gate_faithful(ctx, loss, 3, torch.Generator().manual_seed(0))
    assert not faithful.skipped, faithful.reason
    greedy = greedy_reference(loss, faithful.labels, 3)
    assert faithful.cluster_to_expert.tolist() == greedy
    faithful_routing = route(faithful.gate, ctx)
    assert faithful_routing.tolist() == torch.tensor(greedy)[faithful.labels].tolist()
    assert faithful_routing.tolist() != HUNGARIAN[TRUE].tolist()


def test_faithful_follows_greedy_for_every_seed_that_succeeds():
    ctx, loss = contexts(), loss_matrix()
    n_ok = n_differs = 0
    for seed in range(12):
        result = refit_gate_faithful(ctx, loss, 3, torch.Generator().manual_seed(seed))
        if result.skipped:
            assert "gave up" in result.reason
            continue
        n_ok += 1
        greedy = torch.tensor(greedy_reference(loss, result.labels, 3))
        assert route(result.gate, ctx).tolist() == greedy[result.labels].tolist()
        n_differs += route(result.gate, ctx).tolist() != HUNGARIAN[TRUE].tolist()
    assert n_ok >= 6 and n_differs >= 5


def test_refit_skipped_on_identical_contexts():
    loss = loss_matrix()
    result = refit_gate(torch.zeros(12, 2), loss, 3, torch.Generator().manual_seed(0))
    assert result.skipped and "distinct" in result.reason
    assert result.gate is None and result.labels is None and result.centroids is None
    # Two distinct rows are still fewer than K = 3.
    two = torch.zeros(12, 2)
    two[6:] = 1.0
    assert refit_gate(two, loss, 3, torch.Generator().manual_seed(0)).skipped


def test_kmeans_reseeds_empty_cluster():
    ctx = contexts()
    init = torch.tensor([[-5.0, 0.0], [5.0, 0.0], [100.0, 100.0]], dtype=torch.float64)
    labels, centroids = kmeans(ctx, 3, torch.Generator().manual_seed(0), init=init)
    assert torch.bincount(labels, minlength=3).min() > 0
    # The far centroid was re-seeded and ends up owning the middle cluster.
    assert labels.tolist() == [0] * 4 + [2] * 4 + [1] * 4
    assert torch.allclose(centroids[2], ctx[4:8].mean(0))


def test_reseed_takes_farthest_point_that_is_not_a_lone_member():
    pts = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0]])
    init = torch.tensor([[0.0, 0.0], [19.0, 0.0], [1000.0, 1000.0]])
    # Point 2 is farthest from its centroid (distance 9) but alone in cluster 1, so the empty
    # cluster 2 must take point 1 (distance 0.1 from centroid 0).
    labels, centroids = kmeans(pts, 3, torch.Generator().manual_seed(0), init=init, max_iter=1)
    assert labels.tolist() == [0, 2, 1]
    assert torch.allclose(centroids, pts[[0, 2, 1]])


def test_kmeans_plus_plus_is_deterministic_and_uses_no_global_rng():
    ctx = contexts()
    a = kmeans(ctx, 3, torch.Generator().manual_seed(7))
    for global_seed in range(6):
        torch.manual_seed(global_seed)  # a different global state must not matter
        b = kmeans(ctx, 3, torch.Generator().manual_seed(7))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # The generator does drive the seeding: other seeds give other cluster numberings.
    numberings = {tuple(kmeans(ctx, 3, torch.Generator().manual_seed(s))[0]) for s in range(8)}
    assert len(numberings) > 1
    # The clusters are the true ones (up to relabelling).
    assert len({tuple(a[0][TRUE == j].tolist()) for j in range(3)}) == 3
    assert all(len(set(a[0][TRUE == j].tolist())) == 1 for j in range(3))
    r1 = refit_gate(ctx, loss_matrix(), 3, torch.Generator().manual_seed(5))
    torch.manual_seed(99)
    r2 = refit_gate(ctx, loss_matrix(), 3, torch.Generator().manual_seed(5))
    assert torch.equal(r1.gate, r2.gate)


def test_kmeans_plus_plus_never_seeds_on_a_covered_point():
    # Four copies of 0 and one point at 10: once either is a centroid, the D² weight of its
    # copies is zero, so the two seeds are always {0, 10} (uniform seeding would mostly give 0, 0).
    pts = torch.tensor([[0.0], [0.0], [0.0], [0.0], [10.0]])
    for seed in range(20):
        seeds = _kmeans_pp(pts, 2, torch.Generator().manual_seed(seed))
        assert sorted(seeds.flatten().tolist()) == [0.0, 10.0]


def test_warm_start_centroids_are_used():
    ctx = contexts()
    for order in itertools.permutations(range(3)):
        init = CENTERS[list(order)]
        labels, _ = kmeans(ctx, 3, torch.Generator().manual_seed(0), init=init)
        # Cluster j is the one around the j-th given centroid.
        assert labels.tolist() == torch.argsort(torch.tensor(order))[TRUE].tolist()
        result = refit_gate(
            ctx, loss_matrix(), 3, torch.Generator().manual_seed(0), prev_centroids=init
        )
        assert result.labels.tolist() == labels.tolist()
        assert torch.allclose(result.centroids, CENTERS[list(order)], atol=0.2)
    # Centroids of the wrong shape are ignored (k-means++ instead), not an error.
    bad = torch.zeros(2, 2, dtype=torch.float64)
    result = refit_gate(ctx, loss_matrix(), 3, torch.Generator().manual_seed(0), bad)
    assert not result.skipped
    with pytest.raises(ValueError, match="shape"):
        kmeans(ctx, 3, torch.Generator(), init=bad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_least_squares_gate_reproduces_target_routing(dtype):
    ctx = contexts(dtype)
    target = torch.tensor([2, 0, 1])[TRUE]
    W = fit_gate_least_squares(ctx, target, 3, torch.Generator().manual_seed(0))
    assert W.dtype == dtype and W.shape == (3, 3)
    assert route(W, ctx).tolist() == target.tolist()
    result = refit_gate(ctx, loss_matrix().to(dtype), 3, torch.Generator().manual_seed(0))
    assert result.gate.dtype == dtype and result.centroids.dtype == dtype


def test_least_squares_defaults_and_ridge_formula():
    for fn in (fit_gate_least_squares, refit_gate):
        params = inspect.signature(fn).parameters
        assert params["noise_std"].default == 1e-4 and params["ridge"].default == 1e-6
    assert inspect.signature(refit_gate).parameters["max_iter"].default == 50
    ctx = contexts()
    target = torch.tensor([1, 2, 0])[TRUE]
    # Defaults are the documented values: same draw, same result.
    default = fit_gate_least_squares(ctx, target, 3, torch.Generator().manual_seed(3))
    explicit = fit_gate_least_squares(
        ctx, target, 3, torch.Generator().manual_seed(3), noise_std=1e-4, ridge=1e-6
    )
    assert torch.equal(default, explicit)
    # Without noise the result is the closed-form ridge solution (XᵀX + λI)⁻¹ XᵀY.
    lam = 0.5
    W = fit_gate_least_squares(ctx, target, 3, torch.Generator(), noise_std=0.0, ridge=lam)
    X = np.hstack([ctx.numpy(), np.ones((12, 1))])
    Y = np.eye(3)[target.numpy()]
    assert np.allclose(W.numpy(), np.linalg.solve(X.T @ X + lam * np.eye(3), X.T @ Y))
    # The noise is small (σ = 1e-4) but really applied.
    noiseless = fit_gate_least_squares(ctx, target, 3, torch.Generator(), noise_std=0.0)
    assert not torch.equal(default, noiseless)
    assert torch.allclose(default, noiseless, atol=1e-3)


def test_assign_clusters_hungarian_on_medians_and_nonfinite_losses():
    loss = loss_matrix()
    assert assign_clusters(loss, TRUE, 3).tolist() == HUNGARIAN.tolist()
    # A diverged expert (NaN/inf on a whole cluster) is assigned last, never preferred.
    loss[:4, 0] = float("nan")
    loss[4:8, 2] = float("inf")
    assert assign_clusters(loss, TRUE, 3).tolist() == [1, 0, 2]


def test_assign_clusters_uses_the_true_median_for_even_counts():
    # Two environments per cluster: the median is the mean of both (lower median: 0 and 0).
    loss = torch.tensor([[0.0, 4.0], [10.0, 4.0], [3.0, 0.0], [3.0, 100.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # Medians [[5, 4], [3, 50]]: cluster 0 -> expert 1, cluster 1 -> expert 0.
    assert assign_clusters(loss, labels, 2).tolist() == [1, 0]


def test_check_refit_feasible_rejects_more_experts_than_envs():
    with pytest.raises(ConfigError, match=r"K=10.*9"):
        check_refit_feasible(9, 10)
    check_refit_feasible(10, 10)
    with pytest.raises(ConfigError):
        refit_gate(torch.randn(2, 2), torch.rand(2, 3), 3, torch.Generator())


def test_faithful_gives_up_on_empty_cluster():
    result = refit_gate_faithful(
        torch.zeros(12, 2), loss_matrix(), 3, torch.Generator().manual_seed(0)
    )
    assert result.skipped and "empty" in result.reason
    assert result.gate is None and result.cluster_to_expert is None


def test_faithful_gives_up_when_not_converged():
    gen = torch.Generator().manual_seed(0)
    result = refit_gate_faithful(contexts(), loss_matrix(), 3, gen, max_iter=1)
    # One iteration can never confirm convergence (assignments must repeat).
    assert result.skipped and "converged" in result.reason


def test_kmeans_restarts_escape_a_poor_warm_start():
    # Three tight clusters; a warm start with two centroids inside one cluster converges to a
    # partition that merges the other two. Extra k-means++ runs find the lower inertia.
    centres = torch.tensor([[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0]], dtype=torch.float64)
    offsets = torch.tensor([[0.1, 0.0], [-0.1, 0.0], [0.0, 0.1], [0.0, -0.1]], dtype=torch.float64)
    contexts = (centres[:, None, :] + offsets[None]).reshape(-1, 2)
    families = torch.arange(3).repeat_interleave(4)
    losses = torch.ones(12, 3, dtype=torch.float64)
    poor = torch.tensor([[-5.1, 0.0], [-4.9, 0.0], [2.5, 2.5]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    single = refit_gate(contexts, losses, 3, gen, prev_centroids=poor, n_init=1)
    assert len(torch.unique(single.labels[4:])) == 1  # the two right clusters merged
    restarted = refit_gate(contexts, losses, 3, gen, prev_centroids=poor, n_init=5)
    for f in range(3):  # every true cluster is exactly one K-means cluster
        assert len(torch.unique(restarted.labels[families == f])) == 1
    assert len(torch.unique(restarted.labels)) == 3


def test_cluster_to_expert_map_is_applied_forwards():
    # A 3-cycle optimum (A->1, B->2, C->0) is not its own inverse, unlike HUNGARIAN above: a
    # map read backwards (expert -> cluster) would route A->2, B->0, C->1.
    cycle = torch.tensor([1, 2, 0])
    cost = torch.ones(3, 3, dtype=torch.float64)
    cost[torch.arange(3), cycle] = 0.0
    loss = cost[TRUE] + 0.01 * torch.rand(12, 3, generator=torch.Generator().manual_seed(1))
    assert assign_clusters(loss, TRUE, 3).tolist() == cycle.tolist()
    # Whatever K-means calls the clusters: with some numberings (the cycle itself and the
    # transpositions) a backwards map still routes right, so every numbering is tried.
    for order in itertools.permutations(range(3)):
        init = CENTERS[list(order)]
        result = refit_gate(contexts(), loss, 3, torch.Generator().manual_seed(0), init)
        assert result.labels.tolist() == torch.argsort(torch.tensor(order))[TRUE].tolist()
        assert route(result.gate, contexts()).tolist() == cycle[TRUE].tolist(), order
        assert result.cluster_to_expert[result.labels].tolist() == cycle[TRUE].tolist()
    result = refit_gate_faithful(contexts(), loss, 3, torch.Generator().manual_seed(0))
    assert not result.skipped, result.reason
    assert route(result.gate, contexts()).tolist() == cycle[TRUE].tolist()
