"""The aggregator on hand-made cells: ok, diverged, failed and missing ones."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mixer.errors import MixerError
from mixer.report.aggregate import cell_identity, write_tables
from mixer.report.statistics import higher_is_better
from tests.unit.fake_cells import write_cells, write_seed_cells


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
    # Errors: geometric mean and the sample std of log10 (ddof 1): 0.1, 0.3 -> √0.03 and
    # |log10 3| / √2 = 0.47712 / 1.41421.
    assert mixer["rel_mse_id_gmean"] == pytest.approx(math.sqrt(0.03))
    assert mixer["rel_mse_id_log10_std"] == pytest.approx(0.337376, abs=1e-6)
    assert "rel_mse_id_mean" not in row.columns and "rel_mse_id_std" not in row.columns
    assert mixer["rel_mse_id_n"] == 2
    assert single["rel_mse_id_gmean"] == pytest.approx(0.21 ** (1 / 3))  # (0.5·0.7·0.6)^⅓
    assert single["rel_mse_ood_log10_std"] == pytest.approx(0.0)
    # Scores and times stay linear: arithmetic mean and sample std.
    assert single["seconds_per_outer_step_mean"] == 0.25
    assert mixer["routing_purity_std"] >= 0 and "routing_purity_gmean" not in row.columns
    assert single["context_kmeans_ari_n"] == 0 and math.isnan(single["context_kmeans_ari_mean"])
    solo = row.loc[("solo", "mixer")]
    assert solo["ok"] == 2 and solo["missing"] == 2
    assert solo["rel_mse_id_gmean"] == pytest.approx(0.2)


def test_summary_markdown_bold_and_counts(cells):
    root, expected, logs = cells
    text = write_tables(expected, root / "tables", logs)["markdown"].read_text()
    toy = text.split("## toy")[1].split("### Paired")[0]
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
    # Centre [95% interval]; "(n=k)" when fewer seeds than cells. The better centres (mixer's
    # rel_mse_id and purity, single's rel_mse_ood) are not bold: the intervals overlap.
    assert mixer["rel_mse_id"] == "0.173 [0.00016, 1.9e+02] (n=2)"
    assert single["rel_mse_id"] == "0.594 [0.39, 0.9] (n=3)"
    assert single["rel_mse_ood"] == "0.2 [0.2, 0.2] (n=3)"
    assert "**" not in mixer["routing_purity"] + single["routing_purity"]
    # Timings equal over seeds: degenerate intervals that separate, lower is better.
    assert mixer["seconds_per_outer_step"] == "0.5 [0.5, 0.5] (n=2)"
    assert single["seconds_per_outer_step"] == "**0.25 [0.25, 0.25]** (n=3)"
    assert sum(line.count("**") for line in lines.values()) == 2
    assert single["context_kmeans_ari"] == "—"
    # A dataset with one method has nothing to compare: no bold.
    solo = text.split("## solo")[1]
    assert "**" not in solo and "2/4" in solo and "2 missing" in solo
    latex = (root / "tables" / "summary.tex").read_text()
    assert r"\textbf{0.25 [0.25, 0.25]} (n=3)" in latex and r"rel\_mse\_id" in latex
    assert "0.173 [0.00016, 1.9e+02] (n=2)" in latex and "95% Student-t" in latex
    assert "1 diverged, 1 missing" in latex


def test_confidence_interval_by_hand(cells, tmp_path):
    root, expected, logs = cells
    summary = pd.read_csv(write_tables(expected, root / "tables", logs)["summary"])
    row = summary.set_index(["dataset", "method"])
    # Errors, on log10. single: 0.5, 0.7, 0.6 -> log10 −0.30103, −0.15490, −0.22185: mean
    # −0.22593, std 0.073149; t(0.975, 2) = 4.3027 (t table): −0.22593 ± 0.18171, so
    # [10^−0.40764, 10^−0.04422] = [0.39117, 0.90320].
    single = row.loc[("toy", "single")]
    assert single["rel_mse_id_ci_low"] == pytest.approx(0.39117, abs=1e-5)
    assert single["rel_mse_id_ci_high"] == pytest.approx(0.90320, abs=1e-5)
    # mixer: 0.1, 0.3 -> log10 −1, −0.52288: mean −0.76144, std 0.33738; t(0.975, 1) =
    # 12.706: −0.76144 ± 3.0311 -> [10^−3.7925, 10^2.2697]: a wide interval, never below 0.
    mixer = row.loc[("toy", "mixer")]
    assert mixer["rel_mse_id_ci_low"] == pytest.approx(1.612e-4, rel=1e-3)
    assert mixer["rel_mse_id_ci_high"] == pytest.approx(186.1, rel=1e-3)
    # Linear for times: mixer's 0.5, 0.5 give [0.5, 0.5].
    assert mixer["seconds_per_outer_step_ci_low"] == pytest.approx(0.5)
    # One seed: no interval (null in summary.csv), the mean alone in summary.md.
    one = write_seed_cells(tmp_path / "one", "toy", {"a": {0: 0.3}, "b": {0: 0.1, 1: 0.2}})
    paths = write_tables(one, tmp_path / "one" / "tables", reference="b")
    lone = pd.read_csv(paths["summary"]).set_index("method").loc["a"]
    assert lone["rel_mse_id_n"] == 1 and math.isnan(lone["rel_mse_id_ci_low"])
    assert math.isnan(lone["rel_mse_id_ci_high"])
    assert "| default | a | 1/1 | 0.3 |" in paths["markdown"].read_text()


def _md_row(text: str, method: str, after: str = "") -> list[str]:
    """Cells of ``method``'s first table row in ``text`` after the line ``after``."""
    lines = text.split(after)[1] if after else text
    row = next(line for line in lines.splitlines() if line.startswith(f"| default | {method} |"))
    return [c.strip() for c in row.strip("|").split("|")]


def test_paired_comparison_against_scipy(tmp_path):
    # Pairs are the seeds where both cells are ok: 0-4 (mixer 5 diverged, 6 has no single).
    mixer = {4: 0.35, 2: 0.41, 0: 0.30, 1: 0.25, 3: 0.22, 5: "diverged", 6: 0.1}
    single = {0: 0.40, 1: 0.31, 2: 0.38, 3: 0.30, 4: 0.52, 5: 0.45}
    expected = write_seed_cells(tmp_path, "toy", {"single": single, "mixer": mixer})
    paths = write_tables(expected, tmp_path / "tables")
    row = pd.read_csv(paths["summary"]).set_index("method").loc["mixer"]
    ours, theirs = [0.30, 0.25, 0.41, 0.22, 0.35], [0.40, 0.31, 0.38, 0.30, 0.52]
    # Errors are paired on log10: mean of log10(ours / theirs) = −0.098399, a ratio ×0.797.
    p = stats.ttest_rel(np.log10(ours), np.log10(theirs)).pvalue
    assert row["rel_mse_id_vs_ref_diff"] == pytest.approx(-0.0983988, abs=1e-6)
    assert row["rel_mse_id_vs_ref_p"] == pytest.approx(p)
    assert row["rel_mse_id_vs_ref_n"] == 5 and row["reference"] == "single"
    # Equal differences over the seeds (timings): no spread, no p-value.
    assert row["seconds_per_outer_step_vs_ref_diff"] == pytest.approx(0.25)
    assert math.isnan(row["seconds_per_outer_step_vs_ref_p"])
    reference = pd.read_csv(paths["summary"]).set_index("method").loc["single"]
    assert math.isnan(reference["rel_mse_id_vs_ref_n"])  # the reference is not compared
    text = paths["markdown"].read_text()
    cells = _md_row(text, "mixer", "### Paired comparison against single")
    assert cells[2] == f"×0.797 (p={p:.2g}, n=5)" and "n < 5" not in text.split("## toy")[1]
    assert cells[-1] == "+0.25 (p undefined, n=5)"  # seconds_per_outer_step


def test_fewer_than_five_pairs_claim_no_p_value(cells):
    root, expected, logs = cells
    text = write_tables(expected, root / "tables", logs)["markdown"].read_text()
    cells = _md_row(text, "mixer", "### Paired comparison against single")
    # rel_mse_id: mixer 0.1, 0.3 vs single 0.5, 0.7 (seeds 0, 1): √(0.03 / 0.35) = 0.29277
    assert cells[2] == "×0.293 (n < 5: 2 pairs)"
    assert "p=" not in text


def test_no_comparison_without_the_reference(cells):
    root, expected, logs = cells
    paths = write_tables(expected, root / "tables", logs)
    text = paths["markdown"].read_text()
    assert text.count("### Paired comparison") == 1  # toy only: solo has no single cell
    assert "Paired comparison" not in text.split("## solo")[1]
    summary = pd.read_csv(paths["summary"]).set_index(["dataset", "method"])
    assert math.isnan(summary.loc[("solo", "mixer"), "rel_mse_id_vs_ref_n"])
    paths = write_tables(expected, root / "other", logs, reference="nobody")
    assert "### Paired comparison" not in paths["markdown"].read_text()
    summary = pd.read_csv(paths["summary"])
    assert summary["rel_mse_id_vs_ref_n"].isna().all() and summary["reference"].isna().all()


def test_bold_only_where_the_intervals_separate(tmp_path):
    cases = {
        # a: 0.11 ± 4.3027 × 0.01/√3 = [0.085, 0.135]; b: [0.485, 0.535]: separated.
        "clear": {"a": {0: 0.10, 1: 0.11, 2: 0.12}, "b": {0: 0.50, 1: 0.52, 2: 0.51}},
        # a: 0.2 ± 0.248 overlaps b: 0.3 ± 0.124; a has the best mean but no bold.
        "close": {"a": {0: 0.10, 1: 0.20, 2: 0.30}, "b": {0: 0.25, 1: 0.30, 2: 0.35}},
        # a separates from the runner-up b, not from c (0.9 ± 1.74): no bold either.
        "wide": {
            "a": {0: 0.10, 1: 0.11, 2: 0.12},
            "b": {0: 0.50, 1: 0.52, 2: 0.51},
            "c": {0: 0.2, 1: 1.6, 2: 0.9},
        },
    }
    expected = [p for name, case in cases.items() for p in write_seed_cells(tmp_path, name, case)]
    text = write_tables(expected, tmp_path / "tables", reference="b")["markdown"].read_text()
    sections = {part.split("\n")[0]: part for part in text.split("\n## ")[1:]}
    # On log10 (geometric mean, back-transformed t-interval): a [0.087, 0.14] vs b [0.49, 0.54].
    assert _md_row(sections["clear"], "a")[3] == "**0.11 [0.087, 0.14]**"
    assert "**" not in _md_row(sections["clear"], "b")[3]
    # a: 0.182 [0.046, 0.72] overlaps b: 0.297 [0.2, 0.45]; c: 0.66 [0.046, 9.5] overlaps a.
    assert _md_row(sections["close"], "a")[3] == "0.182 [0.046, 0.72]"
    assert "**" not in sections["close"] + sections["wide"]


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
    assert main([*args, str(expected[0]), "--reference", "mixer"]) == 0
    assert len(pd.read_csv(out / "runs.csv")) == len(expected)
    assert "### Paired comparison against mixer" in (out / "summary.md").read_text()
    assert main(["aggregate", "--out-dir", str(out), str(root / "metrics.json")]) == 2
    assert "not a cell's metrics file" in capsys.readouterr().err


def test_errors_average_on_the_log_scale(tmp_path):
    # Errors 1e-4 and 1e-2: geometric mean 1e-3 (the arithmetic mean would be 5.05e-3), and an
    # interval 10^(−3 ± 12.706 · √2 / √2) that stays above 0.
    expected = write_seed_cells(tmp_path, "toy", {"a": {0: 1e-4, 1: 1e-2}})
    paths = write_tables(expected, tmp_path / "tables", reference="a")
    row = pd.read_csv(paths["summary"]).iloc[0]
    assert row["rel_mse_id_gmean"] == pytest.approx(1e-3)
    assert row["rel_mse_id_ci_low"] == pytest.approx(10 ** (-3 - 12.7062), rel=1e-3)
    assert row["rel_mse_id_ci_high"] == pytest.approx(10 ** (-3 + 12.7062), rel=1e-3)
    assert "| default | a | 2/2 | 0.001 [" in paths["markdown"].read_text()


def test_a_blown_up_seed_is_named_and_kept(tmp_path):
    cases = {
        # Two seeds: 1.1e6 is 1.05e4 × their log-median (geometric mean 104.9).
        "two": {"a": {0: 1.1e6, 1: 1e-2}},
        # Three seeds: 1.1e6 is 7.3e5 × the median 1.5; 2e-2, far below it, is not named.
        "three": {"a": {0: 2e-2, 1: 1.1e6, 2: 1.5}},
        "calm": {"a": {0: 1e-2, 1: 5e-1}},  # 50× apart: neither is 100× their median
    }
    expected = [p for name, case in cases.items() for p in write_seed_cells(tmp_path, name, case)]
    paths = write_tables(expected, tmp_path / "tables", reference="a")
    summary = pd.read_csv(paths["summary"]).set_index("dataset")
    assert summary.loc["two", "blown_up"] == "seed 0 rel_mse_id 1.1e+06"
    assert summary.loc["three", "blown_up"] == "seed 1 rel_mse_id 1.1e+06"
    assert pd.isna(summary.loc["calm", "blown_up"])
    assert summary.loc["three", "rel_mse_id_n"] == 3  # named, never dropped
    text = paths["markdown"].read_text()
    assert "blown-up: seed 1 rel_mse_id 1.1e+06" in text.split("## three")[1]
