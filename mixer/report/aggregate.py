"""Tables of a benchmark: one row per expected cell, then statistics over seeds.

A cell is identified by its path ``.../{dataset}/{regime}/{method}/seed{seed}/metrics.json``.
The aggregator is given every *expected* metrics file (the workflow passes all of them) and
reads whichever exist, so a partial run gives a partial table in which nothing is dropped:

- ``ok`` / ``diverged``: the status written in metrics.json (a diverged run is a result);
- ``failed``: no metrics.json, and the cell's train or evaluate log ends with an error, or
  SLURM killed its newest job (time, memory, cancel, node failure: the cause and the SLURM log's
  path are the reason, mixer/report/slurm_logs.py);
- ``stale``: a metrics.json that is not (or no longer) the result of its folder's cell: it
  lacks the fingerprint, carries another cell's, or its model.pt is gone or changed;
- ``missing``: no metrics.json and no error logged (not run yet, or its folder was deleted).

Outputs (each written atomically): ``runs.csv`` (tidy, every scalar metric and the provenance
flattened into dotted columns), ``summary.csv`` (mean, std, n and 95% confidence interval of
every numeric metric per dataset × regime × method, and the paired comparison of the key
metrics against a reference method), ``summary.md`` and ``summary.tex`` (the key metrics with
their intervals, bold only where the best method's interval separates; summary.md also has
the paired comparisons). docs/METHOD.md §5: "best" is claimed only where the intervals separate.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from mixer.errors import ConfigError, MixerError
from mixer.records.atomic import atomic_write_text
from mixer.records.identity import CELL, cell_of_folder, differences, file_sha256
from mixer.report.slurm_logs import SlurmKills
from mixer.report.summary import IDENTITY, REFERENCE, key_metrics, summarize, to_latex, to_markdown

CELL_PATH = re.compile(
    r"(?P<dataset>[^/]+)/(?P<regime>[^/]+)/(?P<method>[^/]+)/seed(?P<seed>\d+)/metrics\.json$"
)
TABLES = {
    "runs": "runs.csv",
    "summary": "summary.csv",
    "markdown": "summary.md",
    "latex": "summary.tex",
}
# Per-environment arrays of metrics.json (read by the figures), left out of runs.csv even when
# null: a learner without a gate writes ``gate_probs: null``, which is not a measurement.
CELL_ARRAYS = ("per_env", "contexts", "gate_probs", "routing_trace", "routing_ood")


def cell_identity(path) -> dict:
    found = CELL_PATH.search(Path(path).as_posix())
    if found is None:
        raise ValueError(
            f"{path} is not a cell's metrics file "
            "(expected .../{dataset}/{regime}/{method}/seed{seed}/metrics.json)"
        )
    cell = found.groupdict()
    cell["seed"] = int(cell["seed"])
    return cell


def _flatten(data: dict, prefix: str = "", keep_lists: bool = False) -> dict:
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}.", keep_lists or key == "provenance"))
        elif isinstance(value, list):
            if keep_lists:  # provenance (e.g. the systems of a dataset): kept as JSON text
                out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def _logged_error(cell: dict, logs_dir: Path) -> tuple[str, float] | None:
    """The last line of the cell's train/evaluate log when that log reports an error, and
    when that log was written."""
    rel = Path(cell["dataset"], cell["regime"], cell["method"], f"seed{cell['seed']}.log")
    for stage in ("evaluate", "train"):
        log = logs_dir / stage / rel
        if not log.is_file():
            continue
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
        lines = [line for line in lines if line]
        if any("error" in line.lower() or line.startswith("Traceback") for line in lines):
            return f"{stage}: {lines[-1][:300]}", log.stat().st_mtime
    return None


def _read_metrics(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise MixerError(
            f"{path} is not a readable metrics file ({err}). Fix: delete it and run the cell "
            f"again (snakemake --cores 1 {path})."
        ) from None
    if not isinstance(data, dict):
        raise MixerError(f"{path} does not hold a JSON object. Fix: delete it and rerun the cell.")
    return data


def stale_reason(path: Path, data: dict, cell: dict) -> str | None:
    """Why a cell's metrics cannot be trusted as a result of its folder's cell (None: they can).

    The metrics must carry the fingerprint of the cell they are filed under, and the model they
    scored must still be there, unchanged: otherwise they describe some other model.
    """
    found = data.get("fingerprint")
    if not isinstance(found, dict):
        return (
            "metrics.json carries no fingerprint (an older format). Fix: snakemake --cores 1 "
            f"--force {path}"
        )
    wrong = differences(cell, found, CELL)
    if wrong:
        return f"metrics.json is of another cell: {'; '.join(wrong)}"
    model = path.parent / "model.pt"
    if not model.is_file():
        return (
            "its model.pt is gone: these metrics are of an earlier model. Fix: snakemake "
            f"--cores 1 --force {path}"
        )
    if data.get("model_sha256") != file_sha256(model):
        return f"model.pt changed after it was evaluated. Fix: snakemake --cores 1 --force {path}"
    return None


def read_cell(path, logs_dir="logs", kills: SlurmKills | None = None) -> dict:
    """One row of runs.csv: identity, status, reason, scalar metrics, flattened provenance.

    ``kills``: the SLURM logs of the run (read from ``logs_dir`` when not given)."""
    path = Path(path)
    cell = cell_identity(path)
    row = {**cell, "status": "missing", "reason": "", "run_dir": path.parent.as_posix()}
    if path.is_file():
        data = _read_metrics(path)
        per_env = data.get("per_env") or {}
        flat = _flatten({k: v for k, v in data.items() if k not in CELL_ARRAYS})
        for name in IDENTITY:  # the path is the identity; the file's copy must agree
            flat.pop(name, None)
        row.update(flat)
        row["status"], row["reason"] = data.get("status", "ok"), data.get("reason") or ""
        for split, column in (("id", "n_train_envs"), ("ood", "n_adapt_envs")):
            if "env_id" in per_env.get(split, {}):
                row[column] = len(per_env[split]["env_id"])
        stale = stale_reason(path, data, cell)
        if stale is not None:
            row["status"], row["reason"] = "stale", stale
    else:
        error = _logged_error(cell, Path(logs_dir))
        kills = kills if kills is not None else SlurmKills(logs_dir)
        killed = kills.reason(cell, newer_than=error[1] if error else None)
        if killed is not None or error is not None:
            row["status"], row["reason"] = "failed", killed or error[0]
    return row


def collect(metrics_paths, logs_dir="logs") -> pd.DataFrame:
    """runs.csv as a frame: one row per expected cell, in the order given, duplicates dropped."""
    seen, rows, kills = set(), [], SlurmKills(logs_dir)
    for path in metrics_paths:
        key = Path(path).as_posix()
        if key not in seen:
            seen.add(key)
            rows.append(read_cell(path, logs_dir, kills))
    runs = pd.DataFrame(rows)
    if runs.empty:
        runs = pd.DataFrame(columns=[*IDENTITY, "status", "reason", "run_dir"])
    provenance = [c for c in runs.columns if c.startswith("provenance.")]
    first = [*IDENTITY, "status", "reason", "run_dir"]
    middle = [c for c in runs.columns if c not in first and c not in provenance]
    return runs[first + middle + provenance]


def failure_lines(runs_csv) -> list[str]:
    """``Failed cell FOLDER: REASON`` for every failed cell of a runs.csv (what a run that
    ended with errors prints last, so that the cause of each is on the screen)."""
    runs = pd.read_csv(runs_csv, usecols=["status", "reason", "run_dir"], keep_default_na=False)
    failed = runs[runs["status"] == "failed"]
    return [f"Failed cell {row.run_dir}: {row.reason}" for row in failed.itertuples()]


def method_of(metrics_path) -> str | None:
    """The method of a cell: from its run folder's name, else from its metrics.json."""
    cell = cell_of_folder(Path(metrics_path).parent)
    if cell is not None:
        return cell["method"]
    try:
        return json.loads(Path(metrics_path).read_text()).get("method")
    except (OSError, ValueError, AttributeError):
        return None


def check_reference(metrics_paths, reference: str) -> None:
    """A reference method named on purpose must have cells among those tabulated."""
    methods = sorted({m for m in map(method_of, metrics_paths) if m})
    if methods and reference not in methods:
        raise ConfigError(
            f"--reference '{reference}' has no cell among those given (methods: "
            f"{', '.join(methods)}). Fix: name one of them."
        )


def write_tables(metrics_paths, out_dir, logs_dir="logs", reference=REFERENCE) -> dict[str, Path]:
    """Read the expected cells and write the four tables into ``out_dir``.

    ``reference``: the method every other one is compared with, seed by seed (config key
    ``reference_method``); where it has no cell, there is no comparison.
    """
    out_dir = Path(out_dir)
    runs = collect(metrics_paths, logs_dir)
    summary = summarize(runs, reference)
    shown = key_metrics(runs)
    paths = {name: out_dir / file for name, file in TABLES.items()}
    atomic_write_text(paths["runs"], runs.to_csv(index=False))
    atomic_write_text(paths["summary"], summary.to_csv(index=False))
    atomic_write_text(paths["markdown"], to_markdown(summary, shown, reference))
    atomic_write_text(paths["latex"], to_latex(summary, shown))
    return paths
