"""Stage 2: train one benchmark cell (a method on a dataset in a regime with a seed).

Writes ``model.pt`` (learner state, status, config, provenance), ``train_log.csv`` and
``routing.npz`` (routing after every outer step). A loss that becomes NaN/inf ends the run
with status ``diverged``: files are still written and no exception reaches Snakemake.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np
import torch

from mixer.data import load_dataset
from mixer.methods.build import build_learner, pick_device
from mixer.records.atomic import atomic_write
from mixer.records.identity import CELL, IdentityError, check_dataset, differences, fingerprint
from mixer.records.model_file import MODEL_FORMAT
from mixer.training.batches import make_batch
from mixer.training.bookkeeping import Diverged, TrainLog
from mixer.training.checkpoints import Checkpoint
from mixer.training.progress import reporting

TRAINING_SPLITS = ("train", "val")


def train_cell(
    cfg: dict, dataset_dir, out_dir, dataset_spec: dict | None = None, force: bool = False
) -> dict:
    """Train the resolved cell ``cfg`` (:func:`mixer.config.cells.resolve_cell`) on a dataset.

    ``dataset_spec``: the dataset's config entry, checked against the one the folder was
    generated from; ``force``: replace a finished model of another cell in ``out_dir``.
    """
    seed = cfg["seed"]
    out_dir = Path(out_dir)
    # Training reads the training and validation splits only, never test or adaptation data.
    dataset = load_dataset(dataset_dir, splits=TRAINING_SPLITS)
    check_dataset(dataset.meta, dataset_dir, cfg["dataset"], dataset_spec)
    identity = fingerprint(cfg, dataset.meta["content_hash"])
    if not force:
        check_out_dir(out_dir, identity)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    device = pick_device(cfg["device"])
    learner, train = build_learner(cfg, dataset, device, seed)
    if cfg["training"].get("val_every"):
        learner.validation = make_batch(dataset, "val", cfg["regime_knobs"], device)
    checkpoint = Checkpoint(out_dir / "checkpoint.pt", identity)
    status, reason, log = "ok", "", TrainLog()
    began = time.perf_counter()
    try:
        with reporting(f"{cfg['method']} seed {seed}"):
            log = learner.fit(train, checkpoint)
    except Diverged as err:
        status, reason = "diverged", str(err)
    wall = time.perf_counter() - began
    # Plain values and tensors only: the file is read back with torch.load(weights_only=True).
    state = {
        "format": MODEL_FORMAT,
        "fingerprint": identity,
        "status": status,
        "reason": reason,
        "config": cfg,
        "seed": seed,
        "dataset": str(dataset_dir),
        "dataset_hash": dataset.meta["content_hash"],
        "learner": learner.state_dict() if status == "ok" else None,
        "train_seconds": log.seconds,
        "train_wall_seconds": wall,
        "inner_steps": log.inner_steps,
        "outer_steps": len(log.rows),
        "counters": learner.counters(),
        "device": str(device),
        "peak_memory_mb": peak_memory_mb(device),
        "routing_trace": log.routing if log.routing and log.routing[0] else None,
        # The state of lowest validation MSE (val_every > 0) beside the final one.
        "best_val": log.best_val if status == "ok" else None,
    }
    log.write_csv(out_dir / "train_log.csv")
    if not log.rows:
        (out_dir / "train_log.csv").write_text("outer_step,loss\n")
    routing = np.array(log.routing if log.routing and log.routing[0] else [], dtype=np.int64)
    arrays = {"routing": routing, "family": train.family, "env_id": train.env_id}
    atomic_write(out_dir / "routing.npz", lambda tmp: np.savez(tmp, **arrays))
    atomic_write(out_dir / "model.pt", lambda tmp: torch.save(state, tmp))
    checkpoint.remove()
    return state


def check_out_dir(out_dir: Path, identity: dict) -> None:
    """Refuse to replace the finished model of another cell (a slip of ``--out``)."""
    model = out_dir / "model.pt"
    if not model.is_file():
        return
    try:
        found = torch.load(model, map_location="cpu", weights_only=True)["fingerprint"]
    except Exception:  # unreadable or not ours: not a file to overwrite unasked either
        found = None
    if found == identity:
        return  # the same cell again
    if not isinstance(found, dict):
        what = "a file that is not a model of this cell"
    elif differences(identity, found, CELL):
        what = f"the model of another cell, {_cell(found)} (this run is {_cell(identity)})"
    else:
        wrong = "; ".join(differences(identity, found))
        what = f"the model of this cell with other settings or data ({wrong})"
    raise IdentityError(
        f"{model} is {what}: not replaced. Fix: choose another --out, or pass --force to "
        "replace it."
    )


def _cell(found: dict) -> str:
    return "/".join(str(found.get(k)) for k in ("dataset", "regime", "method")) + (
        f"/seed{found.get('seed')}"
    )


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
