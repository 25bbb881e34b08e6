"""Scores for labelled time series (docs/METHOD.md §5): SVM accuracies and super-class scores."""

from __future__ import annotations

import numpy as np
import pytest

from mixer.stages import metrics


def blobs(n_per_class, centres, seed, spread=0.1):
    rng = np.random.default_rng(seed)
    points = np.concatenate(
        [c + spread * rng.standard_normal((n_per_class, len(c))) for c in centres]
    )
    labels = np.repeat(np.arange(len(centres)), n_per_class)
    return points, labels


CENTRES = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]])


def test_svm_separates_separable_contexts():
    train_x, train_y = blobs(10, CENTRES, seed=0)
    test_x, test_y = blobs(50, CENTRES, seed=1)
    assert metrics.svm_accuracy(train_x, train_y, test_x, test_y) == 1.0


def test_svm_on_shuffled_labels_is_near_chance():
    train_x, train_y = blobs(30, CENTRES, seed=0)
    test_x, test_y = blobs(200, CENTRES, seed=1)
    shuffled = np.random.default_rng(2).permutation(train_y)
    accuracy = metrics.svm_accuracy(train_x, shuffled, test_x, test_y)
    assert abs(accuracy - 0.25) < 0.12, accuracy


def test_svm_needs_two_classes_and_flattens_segments():
    segments = np.zeros((4, 1, 5, 2))
    assert metrics.svm_accuracy(segments, np.zeros(4), segments, np.zeros(4)) is None
    train_x, train_y = blobs(10, np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]]), seed=3)
    as_segments = train_x.reshape(len(train_x), 1, 2, 1)  # [E, N, T, d]
    assert metrics.svm_accuracy(as_segments, train_y, as_segments, train_y) == 1.0


def test_labelled_scores_against_classes_and_superclasses():
    contexts, classes = blobs(10, CENTRES, seed=4)
    adapted, adapted_classes = blobs(20, CENTRES, seed=5)
    superclass = np.array([0, 0, 1, 1])[classes]  # classes {0, 1} and {2, 3}
    routing = superclass.copy()  # an expert per super-class
    raw = np.random.default_rng(6).standard_normal((len(classes), 1, 8, 1))
    raw_adapt = np.random.default_rng(7).standard_normal((len(adapted_classes), 1, 8, 1))
    out = metrics.labelled_series_scores(
        contexts,
        adapted,
        raw,
        raw_adapt,
        classes,
        adapted_classes,
        routing=routing,
        train_superclasses=superclass,
    )
    assert out["svm_context_accuracy"] == 1.0
    assert out["svm_raw_accuracy"] < 0.6  # noise segments carry no class
    assert out["routing_ari_superclass"] == pytest.approx(1.0)
    assert out["routing_nmi_superclass"] == pytest.approx(1.0)
    assert out["routing_purity_superclass"] == pytest.approx(1.0)
    assert "experts_used_superclass" not in out
    # K-means with 2 clusters on 4 equidistant-ish blobs need not find the super-classes,
    # but the score is a number in [-1, 1].
    assert -1.0 <= out["context_kmeans_ari_superclass"] <= 1.0
    no_contexts = metrics.labelled_series_scores(
        np.zeros((len(classes), 0)),
        np.zeros((len(adapted_classes), 0)),
        raw,
        raw_adapt,
        classes,
        adapted_classes,
    )
    assert no_contexts["svm_context_accuracy"] is None
    assert "routing_ari_superclass" not in no_contexts


def test_dataset_kind_reads_spec_or_name():
    assert metrics.dataset_kind({"generator": {"generator": "control_charts"}}) == "control_charts"
    assert metrics.dataset_kind({"generator": "eeg"}) == "eeg"
    assert metrics.dataset_kind({}) not in metrics.LABELLED_GENERATORS
