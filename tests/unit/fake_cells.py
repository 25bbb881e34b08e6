"""Hand-made benchmark cells: metrics.json files as ``mixer evaluate`` writes them, and logs.

Two datasets: ``toy`` (methods mixer and single, 4 seeds: ok, diverged, failed and missing
cells) and ``solo`` (mixer, 2 of 4 seeds ok). Nothing but metrics.json and a log is written:
the figures must not need a cell's model or routing files.
"""

from __future__ import annotations

import json

import numpy as np

from mixer.records.identity import file_sha256

# rel_mse_id, rel_mse_ood, routing_purity, svm_context_accuracy of the ok cells, by method/seed.
OK = {
    ("mixer", 0): (0.1, 0.4, 1.0, 0.8),
    ("mixer", 1): (0.3, 0.6, 0.8, 0.9),
    ("single", 0): (0.5, 0.2, 0.5, None),
    ("single", 1): (0.7, 0.2, 0.5, None),
    ("single", 2): (0.6, 0.2, 0.5, None),
}
FAMILY = np.array([0, 0, 1, 1, 2, 2])


def cell_arrays(method, rng) -> dict:
    """contexts, gate_probs and routing_trace of an ok cell (the routing ends on FAMILY).

    A mixer cell has 3-d contexts grouped by family, a 3-expert gate and a routing trace; a
    single cell has one expert: no gate, no routing, and (as a one-for-all learner) no
    contexts.
    """
    if method != "mixer":
        return {"contexts": [[] for _ in FAMILY], "gate_probs": None, "routing_trace": None}
    trace = rng.integers(0, 3, size=(5, len(FAMILY)))
    trace[-2:] = FAMILY
    logits = rng.normal(size=(len(FAMILY), 3)) + 4 * np.eye(3)[FAMILY]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return {
        "contexts": (FAMILY[:, None] + 0.1 * rng.normal(size=(len(FAMILY), 3))).tolist(),
        "gate_probs": probs.tolist(),
        "routing_trace": trace.tolist(),
    }


def metrics(method, seed, status="ok", values=(None,) * 4):
    rel_id, rel_ood, purity, svm = values
    out = {
        "status": status,
        "reason": "loss is nan at outer step 3" if status == "diverged" else "",
        "method": method,
        "learner": method,
        "backbone": "geps",
        "regime": "default",
        "seed": seed,
        "train_seconds": 2.0,
        "seconds_per_outer_step": 0.5 if method == "mixer" else 0.25,
        "outer_steps": 4,
        "refit_skip_reasons": {"empty_cluster": 1},
        "n_experts": 3 if method == "mixer" else 1,
        "provenance": {
            "config": {"method": method, "systems": ["a", "b"]},
            "dataset": "nowhere",
            "dataset_hash": "abc123",
            "versions": {"torch": "2.13.0"},
            "source_hash": "f00",
            "git_commit": None,
        },
    }
    if status == "ok":
        out.update(
            rel_mse_id=rel_id,
            rel_mse_ood=rel_ood,
            mse_id=rel_id / 10,
            mse_ood=rel_ood / 10,
            routing_purity=purity,
            routing_ari=purity - 0.1,
            context_kmeans_ari=None if method == "single" else 0.5,
            per_env={
                "id": {
                    "env_id": list(range(6)),
                    "family": FAMILY.tolist(),
                    "mse": [0.1] * 6,
                    "rel_mse": [rel_id] * 6,
                },
                "ood": {
                    "env_id": [6, 7, 8, 9],
                    "family": [0, 0, 1, 1],
                    "in_training_range": [True, False, True, False],
                    "mse": [0.1, 0.3, 0.1, 0.4],
                    "rel_mse": [rel_ood, 2 * rel_ood, rel_ood, 3 * rel_ood],
                },
            },
            routing_ood=[0, 1, 2, 2],
        )
        if svm is not None:
            out["svm_context_accuracy"] = svm
    return out


def identity(cell, dataset, method, seed) -> dict:
    """A stand-in model.pt in the cell, and the fingerprint and hash that tie metrics to it."""
    (cell / "model.pt").write_bytes(f"model of {method} {seed}".encode())
    fingerprint = {"dataset": dataset, "regime": "default", "method": method, "seed": seed}
    fingerprint.update(dataset_hash="abc123", config_hash="c0ffee", budget={"outer_steps": 4})
    return {"fingerprint": fingerprint, "model_sha256": file_sha256(cell / "model.pt")}


def write_cells(tmp_path):
    """(root, expected metrics paths of two datasets, logs folder); writes the cells that ran."""
    runs, logs = tmp_path / "results" / "runs", tmp_path / "logs"
    expected = []
    for dataset in ("toy", "solo"):
        methods = ("mixer", "single") if dataset == "toy" else ("mixer",)
        for method in methods:
            for seed in range(4):
                cell = runs / dataset / "default" / method / f"seed{seed}"
                expected.append(cell / "metrics.json")
                if dataset == "solo":
                    values = (0.2, 0.3, 1.0, None) if seed < 2 else None
                else:
                    values = OK.get((method, seed))
                if values is None and (dataset, method, seed) != ("toy", "mixer", 2):
                    continue
                status = "ok" if values else "diverged"
                cell.mkdir(parents=True)
                data = metrics(method, seed, status, values or (None,) * 4)
                if status == "ok":
                    data.update(cell_arrays(method, np.random.default_rng(seed)))
                data.update(identity(cell, dataset, method, seed))
                (cell / "metrics.json").write_text(json.dumps(data))
    # toy/single/seed3 failed with an error (its log says so); toy/mixer/seed3 never ran.
    log = logs / "train" / "toy" / "default" / "single" / "seed3.log"
    log.parent.mkdir(parents=True)
    log.write_text("loading\nmixer train: error: K=3 experts but only 2 training environments\n")
    return tmp_path, expected, logs


def write_seed_cells(tmp_path, dataset, rel_mse_id) -> list:
    """Expected metrics paths of ``dataset``'s cells, given rel_mse_id by method and seed.

    ``rel_mse_id``: {method: {seed: value}}; a number is an ok cell (rel_mse_ood and the
    errors follow from it, purity 0.5), "diverged" a diverged cell, None a missing one.
    """
    expected = []
    for method, seeds in rel_mse_id.items():
        for seed, value in seeds.items():
            cell = tmp_path / "results" / "runs" / dataset / "default" / method / f"seed{seed}"
            expected.append(cell / "metrics.json")
            if value is None:
                continue
            cell.mkdir(parents=True)
            if value == "diverged":
                data = metrics(method, seed, "diverged")
            else:
                data = metrics(method, seed, "ok", (value, value, 0.5, None))
            data.update(identity(cell, dataset, method, seed))
            (cell / "metrics.json").write_text(json.dumps(data))
    return expected
