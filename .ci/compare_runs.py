"""Compare the results of two runs of the same config (.ci/slurm: local vs through SLURM).

    python .ci/compare_runs.py tables LOCAL/runs.csv SLURM/runs.csv
    python .ci/compare_runs.py cell LOCAL_CELL_DIR SLURM_CELL_DIR

Everything must be identical but the timings: every column of runs.csv (so every metric, the
identity, status and provenance) and every cell's model.pt (tensors bit for bit, values equal).
The timings (seconds, peak memory) differ from run to run, and model.pt holds them too, so its
file hash (`model_sha256`) is left out and the file's contents compared instead; so is the git
commit (below). Prints one line; the exit status is 1 when anything differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import torch

TIMINGS = {"train_seconds", "seconds_per_outer_step", "peak_memory_mb", "model_sha256"}
# The checkout's commit when the cell ran: a commit made between the two runs changes it without
# changing the code they ran, whose hash (provenance.source_hash) is compared.
NOT_COMPARED = {"provenance.git_commit", "git_commit"}


def is_timing(key) -> bool:
    key = str(key)
    return key in TIMINGS | NOT_COMPARED or "seconds" in key or "memory" in key


def same(a, b) -> bool:
    """Deep equality, timings left out; tensors bit for bit."""
    if isinstance(a, dict):
        keys = {k for k in a.keys() | b.keys() if not is_timing(k)}
        return isinstance(b, dict) and all(same(a.get(k), b.get(k)) for k in keys)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


def model(folder: Path):
    return torch.load(folder / "model.pt", weights_only=True)


def tables(local_csv: Path, slurm_csv: Path) -> list[str]:
    keys = ["dataset", "regime", "method", "seed"]
    local, slurm = (
        pd.read_csv(p, dtype=str, keep_default_na=False).sort_values(keys).reset_index(drop=True)
        for p in (local_csv, slurm_csv)
    )
    if list(local.columns) != list(slurm.columns) or len(local) != len(slurm):
        return [f"the tables' shapes {local.shape} and {slurm.shape}"]
    columns = [c for c in local.columns if not is_timing(c)]
    differ = [c for c in columns if not local[c].equals(slurm[c])]
    roots = [Path(p).parents[2] for p in (local_csv, slurm_csv)]  # results/tables/runs.csv
    differ += [
        f"{d}/model.pt"
        for d in local["run_dir"]
        if not same(model(roots[0] / d), model(roots[1] / d))
    ]
    statuses = sorted(set(local["status"]) | set(slurm["status"]))
    if statuses != ["ok"]:
        differ.append(f"statuses {statuses}")
    print(f"{len(local)} cells x {len(columns)} columns of runs.csv and every model.pt", end="")
    return differ


def cell(local_dir: Path, slurm_dir: Path) -> list[str]:
    local, slurm = (json.loads((d / "metrics.json").read_text()) for d in (local_dir, slurm_dir))
    keys = {k for k in local.keys() | slurm.keys() if not is_timing(k)}
    differ = sorted(k for k in keys if not same(local.get(k), slurm.get(k)))
    if not same(model(local_dir), model(slurm_dir)):
        differ.append("model.pt")
    print(f"metrics.json ({len(local)} keys) and model.pt", end="")
    return differ


if __name__ == "__main__":
    mode, first, second = sys.argv[1:]
    found = {"tables": tables, "cell": cell}[mode](Path(first), Path(second))
    print(
        f" (timings left out): DIFFERENT in {found}" if found else " (timings left out): identical"
    )
    sys.exit(1 if found else 0)
