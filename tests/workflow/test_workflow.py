"""The workflow: a dry run of the default config and a tiny end-to-end run in a temp folder."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mixer.data import load_dataset

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TINY_CONFIG = """
datasets:
  tiny_lv:
    generator: ode
    systems: [lotka_volterra]
    trajectories: {train: 2, val: 1, test: 2, adapt_support: 1, adapt_query: 2}
  tiny_odebench:
    generator: ode
    systems: [harmonic_oscillator, shear_flow]
    envs_per_family: 2
    trajectories: {train: 2, val: 1, test: 2, adapt_support: 1, adapt_query: 2}
  tiny_charts:
    generator: control_charts
    series_per_class: 4
    train_per_class: 2
training: {outer_steps: 2, n_ctx: 2, n_model: 2}
adaptation: {steps: 3}
methods:
  mixer:
    {learner: mixer, backbone: geps, n_experts: 3, context_dim: 3, width: 8, depth: 1}
  single: {learner: single, backbone: coda, context_dim: 2, width: 8, depth: 1}
seeds: [0, 1]
experiments:
  - datasets: [tiny_lv]
    methods: [mixer, single]
"""

pytestmark = pytest.mark.workflow


@pytest.fixture
def workdir(tmp_path):
    """A copy of the workflow (not of results/) to run in isolation."""
    for item in ("Snakefile", "workflow", "config"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    return tmp_path


def snakemake(workdir, *args):
    return subprocess.run(
        [*SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=600
    )


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


def test_lint_is_clean(workdir):
    run = snakemake(workdir, "--lint")
    assert run.returncode == 0, run.stdout + run.stderr


def test_tiny_end_to_end_run_then_nothing_to_do(workdir):
    # Replace the default config (a --configfile would be merged into it, not replace it).
    (workdir / "config" / "config.yaml").write_text(TINY_CONFIG)
    run = snakemake(workdir, "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ("tiny_lv", "tiny_odebench", "tiny_charts"):
        ds = load_dataset(workdir / "results" / "data" / name)
        assert ds["train"].X.ndim == 4
        assert (workdir / "logs" / "generate_dataset" / f"{name}.log").is_file()
    for method in ("mixer", "single"):
        for seed in (0, 1):
            cell = workdir / "results" / "runs" / "tiny_lv" / "default" / method / f"seed{seed}"
            metrics = json.loads((cell / "metrics.json").read_text())
            assert metrics["status"] == "ok" and metrics["outer_steps"] == 2
            assert metrics["provenance"]["dataset_hash"]
    again = snakemake(workdir, "-n")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


def test_bad_config_fails_before_any_job_naming_the_key(workdir):
    (workdir / "config" / "bad.yaml").write_text(
        "datasets:\n  lv:\n    generator: ode\n    systems: [lotka_volterra]\n    seeed: 3\n"
    )
    run = snakemake(workdir, "-n", "--configfile", "config/bad.yaml")
    assert run.returncode != 0
    assert "unknown key 'datasets.lv.seeed'" in run.stdout + run.stderr
