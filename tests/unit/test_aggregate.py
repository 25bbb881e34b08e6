"""The aggregator on hand-made cells: ok, diverged, failed and missing ones."""

from __future__ import annotations

import json
import math
import shutil

import pandas as pd
import pytest

from mixer.aggregate import cell_identity, higher_is_better, write_tables
from mixer.errors import MixerError
from tests.unit.fake_cells import write_cells


@pytest.fixture
def cells(tmp_path):
    return write_cells(tmp_path)


def test_cell_identity_from_path():
    path = "results/runs/odebench3/few-shot.1/moe-gd/seed12/metrics.json"
    assert cell_identity(path) == {
        "dataset": "odebench3",
        "regime": "few-shot.1",
        "method": "moe-gd",
        "seed": 12,
    }
    with pytest.raises(ValueError, match="not a cell's metrics file"):
        cell_identity("results/runs/x/metrics.json")


def test_metrics_not_of_the_cells_current_model_are_stale(cells):
    root, expected, logs = cells
    runs_dir = root / "results" / "runs" / "toy" / "default"
    (runs_dir / "mixer" / "seed0" / "model.pt").unlink()  # e.g. removed by a failed rerun
    (runs_dir / "single" / "seed0" / "model.pt").write_bytes(b"retrained")
    moved = runs_dir / "mixer" / "seed3"  # seed 1's metrics filed under seed 3
    shutil.copytree(runs_dir / "mixer" / "seed1", moved)
    old = json.loads((runs_dir / "single" / "seed1" / "metrics.json").read_text())
    del old["fingerprint"]
    (runs_dir / "single" / "seed1" / "metrics.json").write_text(json.dumps(old))
    runs = pd.read_csv(write_tables(expected, root / "tables", logs)["runs"])
    stale = runs[runs["status"] == "stale"].set_index(["method", "seed"])["reason"]
    assert "its model.pt is gone" in stale[("mixer", 0)]
    assert "snakemake --cores 1 --force " in stale[("mixer", 0)]
    assert "model.pt changed after it was evaluated" in stale[("single", 0)]
    assert "another cell: seed 1 (expected 3)" in stale[("mixer", 3)]
    assert "no fingerprint" in stale[("single", 1)]
    summary = (root / "tables" / "summary.md").read_text()
    assert "2 stale" in summary


def test_truncated_metrics_file_is_named(cells):
    root, expected, logs = cells
    expected[0].write_text(expected[0].read_text()[:40])
    with pytest.raises(MixerError, match=f"{expected[0]} is not a readable metrics file"):
        write_tables(expected, root / "tables", logs)


def test_directions():
    assert higher_is_better("routing_purity") and higher_is_better("svm_raw_accuracy")
    assert higher_is_better("routing_ari_superclass") and higher_is_better("context_kmeans_ari")
    assert not higher_is_better("rel_mse_ood") and not higher_is_better("seconds_per_outer_step")


def test_runs_csv_has_one_row_per_expected_cell(cells):
    root, expected, logs = cells
    paths = write_tables(expected, root / "tables", logs)
    runs = pd.read_csv(paths["runs"])
    assert len(runs) == 12

    def status(dataset, method):
        here = runs[(runs["dataset"] == dataset) & (runs["method"] == method)]
        return here.sort_values("seed")["status"].tolist()

    assert status("toy", "mixer") == ["ok", "ok", "diverged", "missing"]
    assert status("toy", "single") == ["ok", "ok", "ok", "failed"]
    assert status("solo", "mixer") == ["ok", "ok", "missing", "missing"]
    failed = runs[runs["status"] == "failed"].iloc[0]
    assert "train: mixer train: error: K=3 experts" in failed["reason"]
    diverged = runs[runs["status"] == "diverged"].iloc[0]
    assert diverged["reason"] == "loss is nan at outer step 3"
    assert math.isnan(diverged["rel_mse_id"])
    # Scalar metrics, derived counts, nested counters and provenance are flattened.
    first = runs.iloc[0]
    assert first["rel_mse_id"] == 0.1 and first["n_train_envs"] == 6
    assert first["n_adapt_envs"] == 4 and first["refit_skip_reasons.empty_cluster"] == 1
    assert first["provenance.dataset_hash"] == "abc123"
    assert first["provenance.versions.torch"] == "2.13.0"
    assert json.loads(first["provenance.config.systems"]) == ["a", "b"]
    assert "per_env" not in " ".join(runs.columns) and "routing_ood" not in runs.columns
    # Per-environment arrays stay in metrics.json, also where they are null (single: no gate).
    assert not {"contexts", "gate_probs", "routing_trace"} & set(runs.columns)
    assert list(runs.columns[:7]) == [
        "dataset",
        "regime",
        "method",
        "seed",
        "status",
        "reason",
        "run_dir",
    ]


def test_summary_means_stds_counts(cells):
    root, expected, logs = cells
    summary = pd.read_csv(write_tables(expected, root / "tables", logs)["summary"])
    row = summary.set_index(["dataset", "method"])
    mixer, single = row.loc[("toy", "mixer")], row.loc[("toy", "single")]
    assert (mixer["cells"], mixer["ok"], mixer["diverged"], mixer["missing"]) == (4, 2, 1, 1)
    assert (single["ok"], single["failed"], single["missing"]) == (3, 1, 0)
    assert mixer["rel_mse_id_mean"] == pytest.approx(0.2)
    assert mixer["rel_mse_id_std"] == pytest.approx(math.sqrt(0.02))  # sample std, ddof 1
    assert mixer["rel_mse_id_n"] == 2
    assert single["rel_mse_id_mean"] == pytest.approx(0.6)
    assert single["rel_mse_id_std"] == pytest.approx(0.1)
    assert single["rel_mse_ood_std"] == pytest.approx(0.0)
    assert single["context_kmeans_ari_n"] == 0 and math.isnan(single["context_kmeans_ari_mean"])
    solo = row.loc[("solo", "mixer")]
    assert solo["ok"] == 2 and solo["missing"] == 2 and solo["rel_mse_id_mean"] == 0.2


def test_summary_markdown_bold_and_counts(cells):
    root, expected, logs = cells
    text = write_tables(expected, root / "tables", logs)["markdown"].read_text()
    toy = text.split("## toy")[1].split("## solo")[0]
    lines = {line.split("|")[2].strip(): line for line in toy.splitlines() if "| default" in line}
    header = next(line for line in text.splitlines() if line.startswith("| regime"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert "svm_context_accuracy" in columns  # an extra accuracy, reported by one method
    cells_of = {}
    for method in ("mixer", "single"):
        row = [c.strip() for c in lines[method].strip("|").split("|")]
        cells_of[method] = dict(zip(columns, row, strict=True))
    mixer, single = cells_of["mixer"], cells_of["single"]
    assert mixer["ok/total"] == "2/4" and single["ok/total"] == "3/4"
    assert mixer["notes"] == "1 diverged, 1 missing" and single["notes"] == "1 failed"
    # Lower is better for errors, higher for purity; "(n=k)" when fewer seeds than cells.
    assert mixer["rel_mse_id"] == "**0.2 ± 0.14** (n=2)"
    assert single["rel_mse_id"] == "0.6 ± 0.1 (n=3)"
    assert single["rel_mse_ood"] == "**0.2 ± 0** (n=3)" and "**" not in mixer["rel_mse_ood"]
    assert mixer["routing_purity"].startswith("**0.9 ±") and "**" not in single["routing_purity"]
    assert (
        mixer["seconds_per_outer_step"].startswith("0.5")
        and "**" in single["seconds_per_outer_step"]
    )
    assert single["context_kmeans_ari"] == "—"
    # A dataset with one method has nothing to compare: no bold.
    solo = text.split("## solo")[1]
    assert "**" not in solo and "2/4" in solo and "2 missing" in solo
    latex = (root / "tables" / "summary.tex").read_text()
    assert r"\textbf{0.2 $\pm$ 0.14} (n=2)" in latex and r"rel\_mse\_id" in latex
    assert "1 diverged, 1 missing" in latex


def test_tables_of_nothing_yet(tmp_path):
    paths = write_tables([tmp_path / "runs/a/default/m/seed0/metrics.json"], tmp_path / "t")
    runs = pd.read_csv(paths["runs"])
    assert runs["status"].tolist() == ["missing"]
    assert "0/1" in paths["markdown"].read_text()


def test_cli_reads_a_cells_file_and_rejects_other_paths(cells, capsys):
    from mixer.cli import main

    root, expected, logs = cells
    listing = root / "cells.txt"
    listing.write_text("\n".join(str(p) for p in expected[1:]) + "\n")
    out = root / "cli_tables"
    args = ["aggregate", "--out-dir", str(out), "--logs", str(logs), "--cells-file", str(listing)]
    assert main([*args, str(expected[0])]) == 0
    assert len(pd.read_csv(out / "runs.csv")) == len(expected)
    assert main(["aggregate", "--out-dir", str(out), str(root / "metrics.json")]) == 2
    assert "not a cell's metrics file" in capsys.readouterr().err
