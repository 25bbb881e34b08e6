"""Scores of a trained learner: reconstruction errors and the quality of routing and contexts."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def per_env_mse(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Mean squared error per environment over trajectories, time points and dimensions."""
    return ((pred - true) ** 2).reshape(len(true), -1).mean(axis=1)


def per_env_relative_mse(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """MSE divided by the variance of the environment's true trajectories.

    Families of very different scale (ODEBench) can then be averaged.
    """
    variance = true.reshape(len(true), -1).var(axis=1)
    return per_env_mse(pred, true) / np.maximum(variance, 1e-12)


def routing_purity(assigned: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of environments whose expert's majority family is their own family."""
    assigned, labels = np.asarray(assigned), np.asarray(labels)
    hits = 0
    for expert in np.unique(assigned):
        members = labels[assigned == expert]
        hits += np.bincount(members).max()
    return float(hits / len(labels))


def routing_scores(assigned, labels) -> dict[str, float]:
    assigned, labels = np.asarray(assigned), np.asarray(labels)
    return {
        "routing_purity": routing_purity(assigned, labels),
        "routing_ari": float(adjusted_rand_score(labels, assigned)),
        "routing_nmi": float(normalized_mutual_info_score(labels, assigned)),
        "experts_used": len(np.unique(assigned)),
    }


def context_kmeans_ari(contexts: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """ARI of K-means on the contexts themselves (K = number of true families)."""
    n_clusters = len(np.unique(labels))
    if n_clusters < 2 or len(np.unique(contexts, axis=0)) < n_clusters:
        return 0.0
    found = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(contexts)
    return float(adjusted_rand_score(labels, found))


def routing_settled_step(trace: np.ndarray) -> int:
    """Outer step (1-based) at which routing took its final value (1 if it never changed).

    ``trace[i]`` is the routing after outer step i + 1.
    """
    trace = np.asarray(trace)
    changed = np.flatnonzero((trace[1:] != trace[:-1]).any(axis=1))
    return int(changed[-1] + 2) if len(changed) else 1
