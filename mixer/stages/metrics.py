"""Scores of a trained learner: reconstruction errors and the quality of routing and contexts."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

# Generators whose environments are labelled series (family = class, optional super-class):
# their metrics add SVM accuracies and super-class scores (docs/METHOD.md §5).
LABELLED_GENERATORS = ("control_charts", "eeg")
SVM_C = 1.0


def per_env_mse(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Mean squared error per environment over trajectories, time points and dimensions."""
    return ((pred - true) ** 2).reshape(len(true), -1).mean(axis=1)


# Floor of a dimension's per-environment variance, relative to that dimension's variance pooled
# over every environment of the split (see per_env_relative_mse).
REL_MSE_FLOOR = 1e-3
# Last resort, for a dimension constant over the whole split (no scale to be relative to).
ABSOLUTE_VARIANCE_FLOOR = 1e-12


def per_env_relative_mse(
    pred: np.ndarray, true: np.ndarray, rel_floor: float = REL_MSE_FLOOR
) -> np.ndarray:
    """Relative MSE per environment: the mean over state dimensions d of MSE_d / Var_d.

    ``pred`` and ``true`` are the trajectories [E, N, T, d] of every environment of one split
    (all of them at once: the floor below needs the split). For environment e and dimension d,
    MSE_d is the squared error averaged over e's trajectories and time points and Var_d the
    variance of e's true values of d over the same trajectories and time points. Each
    dimension counts alike, so the small species of a 7-D system weigh as much as its large
    ones, and families of very different scale (ODEBench) can be averaged (docs/METHOD.md §5).

    Floor: Var_d is raised to at least ``rel_floor`` × the variance of dimension d pooled over
    all environments, trajectories and times of the split (and to at least 1e-12). A dimension
    that is (nearly) constant in one environment, e.g. a species at rest, would otherwise
    divide a small error by almost nothing and dominate the mean over dimensions. With the
    default 1e-3 the floor only binds where an environment spans less than about 3% of the
    dimension's typical standard deviation in the split.

    Reported per run (``mixer evaluate``): the mean over environments (``rel_mse_id``,
    ``rel_mse_ood``) and the median over environments, ``np.median`` of this array
    (``rel_mse_id_median``, ``rel_mse_ood_median``; see ``mean_and_median``).
    """
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or true.ndim < 2:
        raise ValueError(
            f"pred {pred.shape} and true {true.shape} must be equal shapes [E, ..., d]"
        )
    n_envs, dims = true.shape[0], true.shape[-1]
    values = true.reshape(n_envs, -1, dims)
    mse = ((pred.reshape(n_envs, -1, dims) - values) ** 2).mean(axis=1)  # [E, d]
    variance = values.var(axis=1)  # [E, d]
    pooled = values.reshape(-1, dims).var(axis=0)  # [d], over the whole split
    floor = np.maximum(rel_floor * pooled, ABSOLUTE_VARIANCE_FLOOR)
    return (mse / np.maximum(variance, floor)).mean(axis=1)


def mean_and_median(name: str, per_env: np.ndarray) -> dict[str, float]:
    """``{name: mean, name_median: median}`` of a per-environment score (docs/METHOD.md §5)."""
    per_env = np.asarray(per_env, dtype=np.float64)
    return {name: float(per_env.mean()), f"{name}_median": float(np.median(per_env))}


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


def dataset_kind(meta: dict) -> str:
    """The generator name of a dataset's meta.json (stored as the spec, or as a plain name)."""
    generator = meta.get("generator")
    return generator.get("generator", "") if isinstance(generator, dict) else str(generator)


def svm_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
) -> float | None:
    """Test accuracy of an RBF-SVM fitted on the training features (the paper's protocol).

    Features are standardised with the training statistics; the SVM is scikit-learn's
    ``SVC(kernel="rbf", C=1.0, gamma="scale")``, deterministic (no random state involved).
    None when the training labels hold a single class (nothing to separate).
    """
    train_features = np.asarray(train_features, dtype=np.float64).reshape(len(train_labels), -1)
    test_features = np.asarray(test_features, dtype=np.float64).reshape(len(test_labels), -1)
    if len(np.unique(train_labels)) < 2:
        return None
    model = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=SVM_C, gamma="scale"))
    model.fit(train_features, train_labels)
    return float((model.predict(test_features) == np.asarray(test_labels)).mean())


def labelled_series_scores(
    train_contexts: np.ndarray,
    adapted_contexts: np.ndarray,
    train_segments: np.ndarray,
    adapt_segments: np.ndarray,
    train_labels: np.ndarray,
    adapt_labels: np.ndarray,
    routing: np.ndarray | None = None,
    train_superclasses: np.ndarray | None = None,
) -> dict:
    """Classification scores of a learner on a labelled time-series dataset.

    - ``svm_context_accuracy``: SVM on the training contexts -> the adapted contexts of the
      adaptation environments (None for a learner without contexts);
    - ``svm_raw_accuracy``: the same SVM on the flattened raw segments (reference);
    - with super-classes: routing ARI/NMI/purity and the contexts' K-means ARI against them
      (``*_superclass``; K-means with as many clusters as super-classes).
    """
    has_contexts = train_contexts.shape[1] > 0
    out = {
        "svm_context_accuracy": (
            svm_accuracy(train_contexts, train_labels, adapted_contexts, adapt_labels)
            if has_contexts
            else None
        ),
        "svm_raw_accuracy": svm_accuracy(
            train_segments, train_labels, adapt_segments, adapt_labels
        ),
        "svm_C": SVM_C,
    }
    if train_superclasses is not None:
        if routing is not None:
            scores = routing_scores(routing, train_superclasses)
            out.update(
                {f"{k}_superclass": v for k, v in scores.items() if k.startswith("routing_")}
            )
        out["context_kmeans_ari_superclass"] = (
            context_kmeans_ari(train_contexts, train_superclasses) if has_contexts else None
        )
    return out
