"""MixER gate: a linear router over contexts, refitted in closed form (never by gradients).

The gate maps a context ξ to logits g(ξ) = Wᵀ [ξ; 1] with W of shape [(d_ξ + 1), K]; an
environment is routed to argmax_k g_k(ξ). A refit (docs/METHOD.md §3) clusters the contexts with
K-means, gives each cluster one expert by a one-to-one assignment on median losses, and
solves a least-squares problem whose one-hot targets encode that assignment. The result
overwrites the gate. ``refit_gate_faithful`` keeps the reference code's choices for an ablation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from mixer.errors import ConfigError

Array = TypeVar("Array", torch.Tensor, np.ndarray)


@dataclass
class RefitResult:
    """Outcome of one gate refit; every tensor field is None when the refit was skipped."""

    gate: torch.Tensor | None  # new W [(d_ξ + 1), K]
    centroids: torch.Tensor | None  # [K, d_ξ], warm start for the next refit
    labels: torch.Tensor | None  # [E] cluster of each environment
    cluster_to_expert: torch.Tensor | None  # [K] expert assigned to cluster j
    skipped: bool
    reason: str  # "" or why the refit was skipped


def _skip(reason: str) -> RefitResult:
    return RefitResult(None, None, None, None, skipped=True, reason=reason)


def check_refit_feasible(n_envs: int, K: int) -> None:
    """Raise ConfigError unless K clusters can ever be filled from ``n_envs`` environments."""
    if K < 1:
        raise ConfigError(f"the number of experts K must be at least 1, got K={K}.")
    if K > n_envs:
        raise ConfigError(
            f"K={K} experts but only {n_envs} training environments: the gate refit needs one "
            f"non-empty cluster per expert, which {n_envs} environments can never fill. "
            f"Fix: use at most {n_envs} experts or more environments."
        )


def gate_logits(gate: Array, contexts: Array) -> Array:
    """Logits [ξ; 1] W for every context: [E, d_ξ] -> [E, K], for W [(d_ξ + 1), K].

    The one place the gate's formula is written. Torch tensors (differentiable: the ``gd``
    gate trains through it) and NumPy arrays alike; shapes are checked, values are not.
    """
    if gate.ndim != 2 or contexts.ndim != 2 or gate.shape[0] != contexts.shape[1] + 1:
        raise ValueError(
            f"gate {tuple(gate.shape)} does not fit contexts {tuple(contexts.shape)}: "
            "expected gate [(d_ξ + 1), K] for contexts [E, d_ξ]."
        )
    # The last row of W is the bias, so no concatenated column of ones is needed.
    return contexts @ gate[:-1] + gate[-1]


def route(gate: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
    """Expert index of every environment [E] (long); ties go to the lowest index."""
    with torch.no_grad():
        # torch.argmax returns the first maximal index, which is the documented tie rule.
        return torch.argmax(gate_logits(gate, contexts), dim=1)


def _sq_dist(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    # Explicit differences rather than torch.cdist: cdist's matmul path can report a nonzero
    # distance between identical points, which would break ties and the reseeding rule.
    return ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)


def _kmeans_pp(contexts: torch.Tensor, K: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centroid is drawn with probability ∝ squared distance."""
    E = contexts.shape[0]
    first = torch.randint(E, (1,), generator=generator, device=generator.device).item()
    centroids = [contexts[first]]
    for _ in range(1, K):
        d2 = _sq_dist(contexts, torch.stack(centroids)).min(dim=1).values.double()
        # All points already coincide with a centroid: any draw is as good; reseeding in the
        # Lloyd loop then separates the duplicated centroids as far as the data allows.
        weights = d2 if d2.sum() > 0 else torch.ones_like(d2)
        idx = torch.multinomial(weights.to(generator.device), 1, generator=generator).item()
        centroids.append(contexts[idx])
    return torch.stack(centroids)


def _reseed_empty(
    contexts: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor, d2: torch.Tensor
) -> torch.Tensor:
    """Give each empty cluster the point farthest from its centroid (never a lone member)."""
    K = centroids.shape[0]
    labels = labels.clone()
    own = d2.gather(1, labels[:, None]).squeeze(1)
    for j in range(K):
        counts = torch.bincount(labels, minlength=K)
        if counts[j] > 0:
            continue
        # Taking a cluster's only member would just move the hole; E >= K guarantees that
        # some cluster has two members while another is empty.
        eligible = counts[labels] > 1
        idx = torch.where(eligible, own, torch.full_like(own, -1.0)).argmax()
        labels[idx] = j
        centroids[j] = contexts[idx]
        own[idx] = 0.0  # it now sits on its own centroid
    return labels


def _mean_update(contexts: torch.Tensor, labels: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    K = old.shape[0]
    sums = torch.zeros_like(old).index_add_(0, labels, contexts)
    counts = torch.bincount(labels, minlength=K).to(old.dtype)[:, None]
    # An empty cluster keeps its old centroid instead of becoming 0/0.
    return torch.where(counts > 0, sums / counts.clamp(min=1), old)


def kmeans(
    contexts: torch.Tensor,
    K: int,
    generator: torch.Generator,
    init: torch.Tensor | None = None,
    max_iter: int = 50,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's K-means (Euclidean, mean update) on contexts [E, d_ξ].

    Starts from ``init`` [K, d_ξ] when given, else from k-means++ driven by ``generator``.
    Empty clusters are re-seeded after every assignment, so all K clusters are non-empty on
    return. Stops when assignments repeat or after ``max_iter`` iterations. Returns
    (labels [E] long, centroids [K, d_ξ]), the centroids being the means of those labels.
    """
    E, d = contexts.shape
    if not 1 <= K <= E:
        raise ValueError(f"K-means needs 1 <= K <= E, got K={K}, E={E}.")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}.")
    with torch.no_grad():
        if init is None:
            centroids = _kmeans_pp(contexts, K, generator)
        else:
            if tuple(init.shape) != (K, d):
                raise ValueError(f"init has shape {tuple(init.shape)}, expected {(K, d)}.")
            centroids = init.to(dtype=contexts.dtype, device=contexts.device).clone()
        labels = None
        for _ in range(max_iter):
            d2 = _sq_dist(contexts, centroids)
            new = _reseed_empty(contexts, centroids, d2.argmin(dim=1), d2)
            if labels is not None and torch.equal(new, labels):
                break
            labels = new
            centroids = _mean_update(contexts, labels, centroids)
        return labels, centroids


def _inertia(contexts: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor) -> float:
    return float(((contexts - centroids[labels]) ** 2).sum())


def _median_costs(loss_matrix: torch.Tensor, labels: torch.Tensor, K: int) -> torch.Tensor:
    """C[j, k] = median loss of expert k over cluster j, with non-finite losses made worst."""
    losses = loss_matrix.double().cpu()
    labels = labels.cpu()
    rows = []
    for j in range(K):
        members = losses[labels == j]
        if members.shape[0] == 0:
            raise ValueError(f"cluster {j} is empty; every cluster needs an environment.")
        # quantile(0.5) averages the two middle values (torch.median would take the lower).
        rows.append(torch.quantile(members, 0.5, dim=0))
    cost = torch.stack(rows)
    finite = torch.isfinite(cost)
    # A diverged expert (inf/NaN loss) must stay assignable, just never preferred.
    worst = cost[finite].abs().max().item() * 2 + 1 if finite.any() else 1.0
    return torch.where(finite, cost, torch.full_like(cost, worst))


def assign_clusters(loss_matrix: torch.Tensor, labels: torch.Tensor, K: int) -> torch.Tensor:
    """One-to-one cluster -> expert map [K] minimising the summed median losses (Hungarian)."""
    if loss_matrix.ndim != 2 or loss_matrix.shape[1] != K:
        raise ValueError(f"loss matrix {tuple(loss_matrix.shape)} is not [E, K={K}].")
    with torch.no_grad():
        cost = _median_costs(loss_matrix, labels, K)
        rows, cols = linear_sum_assignment(cost.numpy())
        out = torch.empty(K, dtype=torch.long)
        out[torch.as_tensor(rows)] = torch.as_tensor(cols, dtype=torch.long)
        return out.to(labels.device)


def fit_gate_least_squares(
    contexts: torch.Tensor,
    expert_of_env: torch.Tensor,
    K: int,
    generator: torch.Generator,
    noise_std: float = 1e-4,
    ridge: float = 1e-6,
) -> torch.Tensor:
    """W = argmin ||X W - Y||² + ridge ||W||², X = [Ξ + noise_std·ε, 1], Y = one-hot targets.

    Solved in float64 on the CPU (the system is tiny, and CPU lstsq copes with a rank-deficient
    X when ridge = 0); returned in the contexts' dtype and device, shape [(d_ξ + 1), K].
    """
    E, d = contexts.shape
    with torch.no_grad():
        targets = expert_of_env.cpu().long()
        if targets.shape != (E,) or targets.min() < 0 or targets.max() >= K:
            raise ValueError(f"expert_of_env must be [E={E}] with values in [0, {K}).")
        # Drawn even when noise_std = 0 so the generator advances the same way either way.
        eps = torch.randn((E, d), generator=generator, device=generator.device)
        ctx = contexts.detach().double().cpu() + noise_std * eps.double().cpu()
        X = torch.cat([ctx, torch.ones(E, 1, dtype=torch.float64)], dim=1)
        Y = torch.nn.functional.one_hot(targets, K).double()
        if ridge > 0:
            # Ridge as least squares on the augmented system [X; √λ I] W = [Y; 0].
            X = torch.cat([X, ridge**0.5 * torch.eye(d + 1, dtype=torch.float64)])
            Y = torch.cat([Y, torch.zeros(d + 1, K, dtype=torch.float64)])
        W = torch.linalg.lstsq(X, Y, driver="gelsd").solution
        return W.to(dtype=contexts.dtype, device=contexts.device)


def _check_inputs(contexts: torch.Tensor, loss_matrix: torch.Tensor, K: int) -> str:
    """Raise on malformed input or K > E; return a skip reason ("" when the refit can run)."""
    if contexts.ndim != 2 or loss_matrix.ndim != 2 or loss_matrix.shape != (contexts.shape[0], K):
        raise ValueError(
            f"contexts {tuple(contexts.shape)} and loss matrix {tuple(loss_matrix.shape)} "
            f"must be [E, d_ξ] and [E, K={K}]."
        )
    check_refit_feasible(contexts.shape[0], K)
    return "" if torch.isfinite(contexts).all() else "contexts contain non-finite values"


def refit_gate(
    contexts: torch.Tensor,
    loss_matrix: torch.Tensor,
    K: int,
    generator: torch.Generator,
    prev_centroids: torch.Tensor | None = None,
    noise_std: float = 1e-4,
    ridge: float = 1e-6,
    max_iter: int = 50,
    n_init: int = 1,
) -> RefitResult:
    """The MixER gate refit: K-means, Hungarian cluster -> expert map, ridge least squares.

    ``loss_matrix[e, k]`` is the loss of expert k alone on environment e. Raises ConfigError
    when K > E (see check_refit_feasible); skips (skipped=True) while the contexts have fewer
    than K distinct rows or contain non-finite values. ``prev_centroids`` warm-starts K-means
    when its shape is [K, d_ξ]; otherwise k-means++ is used. With ``n_init`` > 1, n_init - 1
    further k-means++ runs compete with that first run and the partition of lowest inertia is
    kept (a single K-means run can stop in a poor local optimum).
    """
    reason = _check_inputs(contexts, loss_matrix, K)
    if reason:
        return _skip(reason)
    with torch.no_grad():
        contexts = contexts.detach()
        n_distinct = torch.unique(contexts, dim=0).shape[0]
        if n_distinct < K:
            return _skip(f"contexts have {n_distinct} distinct rows, fewer than K={K} clusters")
        init = None
        if prev_centroids is not None and tuple(prev_centroids.shape) == (K, contexts.shape[1]):
            init = prev_centroids.detach()
        labels, centroids = kmeans(contexts, K, generator, init=init, max_iter=max_iter)
        best = _inertia(contexts, labels, centroids)
        for _ in range(n_init - 1):
            cand_labels, cand_centroids = kmeans(contexts, K, generator, max_iter=max_iter)
            cand = _inertia(contexts, cand_labels, cand_centroids)
            if cand < best:
                labels, centroids, best = cand_labels, cand_centroids, cand
        cluster_to_expert = assign_clusters(loss_matrix.detach(), labels, K)
        gate = fit_gate_least_squares(
            contexts, cluster_to_expert[labels], K, generator, noise_std=noise_std, ridge=ridge
        )
        return RefitResult(gate, centroids, labels, cluster_to_expert, skipped=False, reason="")


def _kmeans_faithful(
    contexts: torch.Tensor, K: int, generator: torch.Generator, max_iter: int
) -> tuple[torch.Tensor | None, torch.Tensor | None, str]:
    """Reference K-means: L1 assignment, mean update, uniform ±1e-3 init, gives up on trouble."""
    u = torch.rand((K, contexts.shape[1]), generator=generator, device=generator.device)
    centroids = ((2 * u - 1) * 1e-3).to(dtype=contexts.dtype, device=contexts.device)
    labels = None
    for it in range(max_iter):
        new = (contexts[:, None, :] - centroids[None, :, :]).abs().sum(-1).argmin(dim=1)
        counts = torch.bincount(new, minlength=K)
        if (counts == 0).any():
            empty = torch.nonzero(counts == 0).flatten().tolist()
            return None, None, f"K-means gave up: cluster(s) {empty} empty at iteration {it}"
        if labels is not None and torch.equal(new, labels):
            return labels, centroids, ""
        labels = new
        centroids = _mean_update(contexts, labels, centroids)
    return None, None, f"K-means gave up: not converged after {max_iter} iterations"


def refit_gate_faithful(
    contexts: torch.Tensor,
    loss_matrix: torch.Tensor,
    K: int,
    generator: torch.Generator,
    max_iter: int = 50,
) -> RefitResult:
    """Refit with the reference code's choices (ablation of ``refit_gate``).

    K-means assigns by L1 distance, updates by the mean and starts from centroids uniform in
    ±1e-3; the whole refit is skipped when a cluster empties or K-means has not converged by
    ``max_iter``. Clusters then pick experts greedily in index order (cheapest remaining median
    loss), and the gate is plain least squares (no ridge).
    """
    reason = _check_inputs(contexts, loss_matrix, K)
    if reason:
        return _skip(reason)
    with torch.no_grad():
        contexts = contexts.detach()
        labels, centroids, reason = _kmeans_faithful(contexts, K, generator, max_iter)
        if labels is None:
            return _skip(reason)
        cost = _median_costs(loss_matrix.detach(), labels, K)
        cluster_to_expert = torch.empty(K, dtype=torch.long)
        taken = torch.zeros(K, dtype=torch.bool)
        for j in range(K):
            k = torch.where(taken, torch.inf, cost[j]).argmin()
            cluster_to_expert[j] = k
            taken[k] = True
        cluster_to_expert = cluster_to_expert.to(labels.device)
        gate = fit_gate_least_squares(contexts, cluster_to_expert[labels], K, generator, ridge=0.0)
        return RefitResult(gate, centroids, labels, cluster_to_expert, skipped=False, reason="")
