"""Stage 3: score a trained cell (in-domain test, adaptation, routing, cost).

Evaluation writes ``metrics.json`` (docs/METHOD.md §5), also for a diverged run. Besides the
reconstruction, routing and cost figures it holds, for a PL-RNN, ``loss_tf``/``mse_free``
(teacher-forced at the final α / free running, in-domain; ``*_ood`` after adaptation), and
for labelled time series (dataset generator ``control_charts`` or ``eeg``):
``svm_context_accuracy`` (RBF-SVM, C = 1, gamma = 'scale', standardised features, trained
on the training contexts with their classes, tested on the adapted contexts of the
adaptation environments), ``svm_raw_accuracy`` (the same SVM on the flattened raw segments,
training -> adaptation support) and, when environments carry ``superclass_index``, the
routing and context K-means scores against super-classes (``*_superclass``).
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

from mixer.data import load_dataset
from mixer.errors import MixerError, ModelFileError
from mixer.methods import learner_class
from mixer.methods.build import build_learner, pick_device
from mixer.records import provenance
from mixer.records.atomic import atomic_write_text
from mixer.records.identity import (
    CELL,
    IdentityError,
    cell_of_folder,
    check_dataset,
    differences,
    file_sha256,
)
from mixer.records.model_file import MODEL_FORMAT
from mixer.records.sources import source_hash
from mixer.training.batches import make_batch

# What trained and scored a cell (besides its learner's module), for its provenance.
CODE = ["mixer.stages.train", "mixer.stages.evaluate"]


def load_model(model_file) -> dict:
    """A model.pt written by ``mixer train``, read without running any code (weights_only)."""
    model_file = Path(model_file)
    fix = "Fix: pass the model.pt that `mixer train` wrote for the cell."
    if not model_file.is_file():
        raise ModelFileError(f"model file {model_file} does not exist. {fix}")
    try:
        with warnings.catch_warnings():  # torch warns about a foreign file's pickle protocol
            warnings.simplefilter("ignore")
            state = torch.load(model_file, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure: the file is not ours, or unsafe
        # torch's own text advises loading with weights_only=False: never repeat that advice.
        why = (
            "it holds code or objects other than tensors and plain values, which are never loaded"
            if isinstance(err, pickle.UnpicklingError)
            else f"{type(err).__name__}: {str(err).strip()[:120]}"
        )
        raise ModelFileError(
            f"{model_file} is not a model file of mixer-bench ({why}). {fix}"
        ) from None
    if isinstance(state, dict) and "outer_step" in state and "format" not in state:
        raise ModelFileError(
            f"{model_file} is a training checkpoint (outer step {state['outer_step']}), not a "
            f"model: pass the model.pt that `mixer train` writes when it ends, beside it."
        )
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ModelFileError(
            f"{model_file} is not a model file of this mixer-bench version (format {found!r}, "
            f"expected {MODEL_FORMAT}). Fix: retrain the cell (mixer train, or snakemake "
            f"--cores 1 --force {model_file})."
        )
    return state


def check_identity(state: dict, model_file, dataset, out_file) -> None:
    """Refuse a model trained on another dataset, or scored into another cell's folder."""
    found = state["fingerprint"]
    data_hash = dataset.meta["content_hash"]
    if found["dataset_hash"] != data_hash:
        raise IdentityError(
            f"{model_file} was trained on dataset '{found['dataset']}' with content hash "
            f"{found['dataset_hash']}, but {dataset.path} has hash {data_hash}. Fix: evaluate "
            "it on the dataset it was trained on, or retrain it on this one."
        )
    folder = cell_of_folder(Path(out_file).parent)
    if folder is not None:  # written into a run folder: it must be this model's cell
        wrong = differences(folder, found, CELL)
        if wrong:
            raise IdentityError(
                f"{model_file} is the model of cell {_cell_name(found)}, not of the folder of "
                f"{out_file} ({'; '.join(wrong)}). Fix: write its metrics into its own cell's "
                "folder."
            )


def _cell_name(cell: dict) -> str:
    return f"{cell['dataset']}/{cell['regime']}/{cell['method']}/seed{cell['seed']}"


def evaluate_cell(model_file, dataset_dir, out_file, dataset_spec: dict | None = None) -> dict:
    """Score ``model_file`` on ``dataset_dir`` into ``out_file`` (``dataset_spec``: the
    dataset's config entry, checked against the one the folder was generated from)."""
    model_file, out_file = Path(model_file), Path(out_file)
    check_writable(out_file)  # before minutes of scoring, not after
    state = load_model(model_file)
    dataset = load_dataset(dataset_dir)
    check_dataset(dataset.meta, dataset_dir, state["config"]["dataset"], dataset_spec)
    check_identity(state, model_file, dataset, out_file)
    cfg = state["config"]
    metrics_out = {
        "status": state["status"],
        "reason": state["reason"],
        "method": cfg["method"],
        "learner": cfg["learner"],
        # Baselines fix their architecture (coda may run a plrnn), mixtures read `backbone`.
        "backbone": learner_class(cfg["learner"]).architecture_of(cfg),
        "regime": cfg["regime"],
        "seed": state["seed"],
        "train_seconds": state["train_seconds"],
        # None for a learner that runs no outer step (a reference predictor): not 0 s, the
        # fastest row of every table.
        "seconds_per_outer_step": (
            state["train_seconds"] / state["outer_steps"] if state["outer_steps"] else None
        ),
        "outer_steps": state["outer_steps"],
        "inner_steps": state["inner_steps"],
        "device": state["device"],
        "peak_memory_mb": state["peak_memory_mb"],
        **state["counters"],
    }
    if state["status"] == "ok":
        metrics_out.update(_score(state, cfg, dataset))
        if state.get("best_val"):
            metrics_out["best_val"] = _score_best_val(state, cfg, dataset)
    metrics_out["fingerprint"] = state["fingerprint"]
    metrics_out["model_sha256"] = file_sha256(model_file)
    metrics_out["provenance"] = {
        "config": cfg,
        "dataset": str(dataset_dir),
        "dataset_hash": state["dataset_hash"],
        "versions": provenance.versions("torch", "torchdiffeq", "numpy", "scipy"),
        "source_hash": source_hash(CODE, [_target(learner_class(cfg["learner"]))]),
        "git_commit": provenance.git_commit(),
    }
    text = json.dumps(metrics_out, indent=1, default=_json_default) + "\n"
    atomic_write_text(out_file, text)
    return metrics_out


def _target(cls) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def check_writable(out_file: Path) -> None:
    """Fail at once, naming the folder, when ``out_file`` could not be written."""
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        probe = out_file.parent / f".{out_file.name}.probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise MixerError(
            f"cannot write {out_file}: {err.strerror or err}. Fix: choose a writable --out "
            "folder (and check the free disk space)."
        ) from None


def _score(state, cfg, dataset) -> dict:
    # scikit-learn is imported here, not at module level: a training job never needs it and
    # its import costs seconds per process.
    from mixer.stages import metrics

    device = pick_device("auto") if state["device"].startswith("cuda") else torch.device("cpu")
    learner, train = build_learner(cfg, dataset, device, state["seed"])
    learner.load_state_dict(state["learner"])
    knobs = cfg["regime_knobs"]
    test = make_batch(dataset, "test", knobs, device)
    assert np.array_equal(test.env_id, train.env_id), "test and train environments differ"
    # A series' test and query parts are the later times of its train and support parts:
    # forecast them running on from the end of what was seen (a PL-RNN carries its latent
    # state), not from their own first sample (a value to be scored, and a reset state).
    series = "series_split" in dataset.meta
    pred_id = (learner.forecast(train, test) if series else learner.predict(test)).cpu().numpy()
    true_id = test.X.cpu().numpy()
    # Validation: training environments, fresh trajectories (the split choices may use).
    val = make_batch(dataset, "val", knobs, device)
    pred_val, true_val = learner.predict(val).cpu().numpy(), val.X.cpu().numpy()
    mse_val = metrics.per_env_mse(pred_val, true_val)
    rel_val = metrics.per_env_relative_mse(pred_val, true_val)
    support = make_batch(dataset, "adapt_support", knobs, device)
    query = make_batch(dataset, "adapt_query", knobs, device)
    adapted = learner.adapt(support)
    assert np.array_equal(query.env_id, support.env_id), "query and support environments differ"
    pred_ood = (
        (learner.forecast(support, query, adapted) if series else learner.predict(query, adapted))
        .cpu()
        .numpy()
    )
    true_ood = query.X.cpu().numpy()
    mse_id, rel_id = (
        metrics.per_env_mse(pred_id, true_id),
        metrics.per_env_relative_mse(pred_id, true_id),
    )
    mse_ood = metrics.per_env_mse(pred_ood, true_ood)
    rel_ood = metrics.per_env_relative_mse(pred_ood, true_ood)
    inside = np.array([dataset.environments[int(i)]["in_training_range"] for i in query.env_id])
    out = {
        "mse_id": float(mse_id.mean()),
        "mse_ood": float(mse_ood.mean()),
        "mse_val": float(mse_val.mean()),
        **metrics.mean_and_median("rel_mse_val", rel_val),
        **metrics.mean_and_median("rel_mse_id", rel_id),
        **metrics.mean_and_median("rel_mse_ood", rel_ood),
        "mse_ood_in_range": float(mse_ood[inside].mean()) if inside.any() else None,
        "mse_ood_out_of_range": float(mse_ood[~inside].mean()) if (~inside).any() else None,
        "per_env": {
            "id": {
                "env_id": train.env_id,
                "family": train.family,
                "mse": mse_id,
                "rel_mse": rel_id,
            },
            "ood": {
                "env_id": query.env_id,
                "family": query.family,
                "in_training_range": inside,
                "mse": mse_ood,
                "rel_mse": rel_ood,
            },
        },
    }
    # Discrete-time backbones (PL-RNN): teacher-forced loss at the final alpha next to the
    # free-running MSE (mse_id / mse_ood above are free running too).
    out.update(learner.sequence_losses(test))
    out.update({f"{k}_ood": v for k, v in learner.sequence_losses(query, adapted).items()})
    contexts = learner.contexts().cpu().numpy()
    # A learner without contexts (one-for-all: size 0) has nothing to cluster: null, not 0.
    out["context_kmeans_ari"] = (
        metrics.context_kmeans_ari(contexts, train.family) if contexts.shape[1] else None
    )
    # What the figures draw, so that they read the metrics file only (no table columns).
    gate = learner.gate_probabilities()
    trace = np.asarray(state["routing_trace"]) if state["routing_trace"] else None
    out["contexts"] = contexts
    out["gate_probs"] = None if gate is None else gate.cpu().numpy()
    out["routing_trace"] = trace
    routing = learner.routing()
    if routing is not None:
        out.update(metrics.routing_scores(routing.cpu().numpy(), train.family))
        if trace is not None:
            out["routing_settled_step"] = metrics.routing_settled_step(trace)
        out["routing_ood"] = learner.routing(adapted).cpu().numpy()
    if metrics.dataset_kind(dataset.meta) in metrics.LABELLED_GENERATORS:
        out.update(_labelled_scores(dataset, train, support, contexts, adapted, routing))
    return out


# What metrics.json's best_val block keeps of the checkpoint's own scores.
BEST_VAL_SCORES = ("mse_id", "mse_ood", "mse_val", "rel_mse_id", "rel_mse_ood")


def _score_best_val(state, cfg, dataset) -> dict:
    """The state of lowest validation MSE during training (training's ``val_every``) scored
    as the final model is, adaptation included: where it was taken and its errors."""
    best = state["best_val"]
    scores = _score({**state, "learner": best["learner"], "routing_trace": None}, cfg, dataset)
    return {
        "outer_step": best["outer_step"],
        "inner_steps": best["inner_steps"],
        **{key: scores[key] for key in BEST_VAL_SCORES},
    }


def _labelled_scores(dataset, train, support, contexts, adapted, routing) -> dict:
    """SVM accuracies and super-class scores of a labelled time-series dataset (§5)."""
    from mixer.stages import metrics

    envs = dataset.environments
    superclass = [envs[int(i)].get("superclass_index") for i in train.env_id]
    return metrics.labelled_series_scores(
        contexts,
        adapted.detach().cpu().numpy(),
        train.X.cpu().numpy(),
        support.X.cpu().numpy(),
        train.family,
        support.family,
        routing=None if routing is None else routing.cpu().numpy(),
        train_superclasses=None if None in superclass else np.array(superclass),
    )


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj)}")
