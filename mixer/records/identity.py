"""What a result file is of: the fingerprint of its cell (ARCHITECTURE.md, "Identity of results").

Checkpoints, models and metrics files carry the fingerprint of the cell that wrote them: the
cell (dataset, regime, method, seed), the content hash of the dataset it was trained on, the
hash of its resolved settings and its budget. A resume, an evaluation and an aggregation trust
a file only when its fingerprint is the one they expect.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from mixer.errors import MixerError

CELL = ("dataset", "regime", "method", "seed")
# .../{dataset}/{regime}/{method}/seed{seed}/{file}: the layout of results/runs/.
CELL_DIR = re.compile(r"(?P<dataset>[^/]+)/(?P<regime>[^/]+)/(?P<method>[^/]+)/seed(?P<seed>\d+)$")


class IdentityError(MixerError):
    """A file is not of the cell, dataset or settings it is used for."""


def settings_hash(cell: dict) -> str:
    """SHA-256 (16 hex digits) of a resolved cell's settings (mixer.config.cells.resolve_cell)."""
    text = json.dumps(cell, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(cell: dict, dataset_hash: str) -> dict:
    """The identity of everything a cell writes, from its resolved settings."""
    training = cell["training"]
    return {
        **{key: cell[key] for key in CELL},
        "dataset_hash": dataset_hash,
        "config_hash": settings_hash(cell),
        "budget": {key: training[key] for key in ("outer_steps", "n_ctx", "n_model")},
    }


def differences(expected: dict, found: dict, keys=None) -> list[str]:
    """``key: found != expected`` for every key (of ``keys``, default all) that differs."""
    keys = keys or sorted(expected.keys() | found.keys())
    return [
        f"{key} {found.get(key)!r} (expected {expected.get(key)!r})"
        for key in keys
        if expected.get(key) != found.get(key)
    ]


def check_dataset(meta: dict, path, name: str, spec: dict | None = None) -> None:
    """Refuse a dataset folder that holds another dataset than ``name`` (its meta.json), or
    that was generated from another config entry than ``spec`` (when known)."""
    found = meta.get("dataset")
    fix = (
        f"Fix: regenerate it (delete {path} and run snakemake again, or `mixer generate "
        f"--dataset {name} ...`), or pass the folder of dataset '{name}'."
    )
    if found != name:
        raise IdentityError(
            f"{path} holds dataset '{found}' (its meta.json), not '{name}' that this cell is "
            f"of. {fix}"
        )
    if spec is not None and meta.get("generator") != spec:
        wrong = differences(spec, meta.get("generator") or {})
        raise IdentityError(
            f"{path} was generated from another config entry of '{name}' than this run's "
            f"({'; '.join(wrong)}). {fix}"
        )


def cell_of_folder(folder) -> dict | None:
    """The cell a run folder ``.../{dataset}/{regime}/{method}/seed{seed}`` is named for."""
    found = CELL_DIR.search(Path(folder).resolve().as_posix())
    if found is None:
        return None
    cell = found.groupdict()
    cell["seed"] = int(cell["seed"])
    return cell


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
