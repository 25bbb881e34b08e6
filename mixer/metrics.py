"""Scores of a trained learner: reconstruction errors and the quality of routing and contexts."""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

# Generators whose environments are labelled series (family = class, optional super-class):
# their metrics add SVM accuracies and super-class scores (METHOD.md §5).
LABELLED_GENERATORS = ("control_charts", "eeg")
SVM_C = 1.0


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
