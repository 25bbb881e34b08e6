"""The literature table on a hand-made runs.csv: numbers, ignored cells, not-run anchors, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from mixer.errors import ConfigError
from mixer.report.literature import read_anchors, verdict, write_literature

REPO = Path(__file__).resolve().parents[2]
NAN = math.nan
ANCHORS = """dataset,learner,metric,low,high,source,setting
glycolytic,coda,mse_id,4.1e-4,4.9e-4,"CoDA paper, logged runs","width 224"
glycolytic,ncf,mse_ood,5.9e-4,5.9e-4,NCF paper,
selkov,coda,mse_id,9.0e-3,1.04e-2,"CoDA paper, logged runs","width 224"
"""
# (regime, method, seed, status, learner, mse_id, mse_ood); a cell that has no metrics.json
# (missing, failed) has no learner in runs.csv.
CELLS = [
    ("default", "coda", 0, "ok", "coda", 4e-4, 1.0),
    ("default", "coda", 1, "ok", "coda", 6e-4, 1.0),
    ("default", "coda", 2, "ok", "coda", 8e-4, 1.0),
    ("default", "coda", 3, "diverged", "coda", 5.0, 5.0),  # not a measurement
    ("traj1", "coda", 0, "ok", "coda", 1e-1, 1e-1),  # other data: not the authors' protocol
    ("default", "coda-authors", 0, "ok", "coda", 3e-4, 1.0),
    ("default", "coda-authors", 1, "ok", "coda", 5e-4, 1.0),
    ("default", "coda-authors", 2, "missing", NAN, NAN, NAN),
    ("default", "ncf", 0, "ok", "ncf", 1.0, 1.5e-3),
    ("default", "ncf", 1, "ok", "ncf", 1.0, 2.5e-3),
    ("default", "single", 0, "ok", "single", 1e-9, 1e-9),  # another learner
]


@pytest.fixture
def tables(tmp_path):
    columns = ["regime", "method", "seed", "status", "learner", "mse_id", "mse_ood"]
    runs = pd.DataFrame(CELLS, columns=columns)
    runs.insert(0, "dataset", "glycolytic")
    runs.insert(5, "reason", "")
    runs.to_csv(tmp_path / "runs.csv", index=False)
    (tmp_path / "anchors.csv").write_text(ANCHORS)
    paths = write_literature(tmp_path / "runs.csv", tmp_path / "anchors.csv", tmp_path / "out")
    table = pd.read_csv(paths["csv"], keep_default_na=False, na_values=[""])
    return table, paths["markdown"].read_text()


def _row(table, metric, method):
    found = table[(table["metric"] == metric) & (table["method"] == method)]
    assert len(found) == 1, table
    return found.iloc[0]


def test_mean_std_ratio_and_verdict_over_the_ok_default_seeds(tables):
    table, _ = tables
    coda = _row(table, "mse_id", "coda")
    middle = math.sqrt(4.1e-4 * 4.9e-4)  # the geometric middle of the logged range
    assert coda["ours_mean"] == pytest.approx(6e-4, rel=1e-12)
    assert coda["ours_std"] == pytest.approx(2e-4, rel=1e-9)  # sample std (ddof 1)
    assert (coda["n_ok"], coda["n_cells"]) == (3, 4)
    assert coda["ratio"] == pytest.approx(6e-4 / middle, rel=1e-12)
    assert coda["ratio"] != pytest.approx(6e-4 / 4.5e-4, rel=1e-6)  # not the arithmetic one
    assert coda["verdict"] == "within 2x"
    assert (coda["logged_low"], coda["logged_high"]) == (4.1e-4, 4.9e-4)
    assert (coda["source"], coda["setting"]) == ("CoDA paper, logged runs", "width 224")


def test_a_method_of_the_learner_under_another_name_counts_its_cells(tables):
    table, _ = tables
    authors = _row(table, "mse_id", "coda-authors")
    assert authors["ours_mean"] == pytest.approx(4e-4, rel=1e-12)
    assert authors["ours_std"] == pytest.approx(math.sqrt(2) * 1e-4, rel=1e-9)
    # Its missing cell has no learner of its own but is one of the method's cells.
    assert (authors["n_ok"], authors["n_cells"]) == (2, 3)
    assert authors["verdict"] == "at or below"
    ncf = _row(table, "mse_ood", "ncf")
    assert ncf["ours_mean"] == pytest.approx(2e-3, rel=1e-12)
    assert ncf["ratio"] == pytest.approx(2e-3 / 5.9e-4, rel=1e-12)
    assert ncf["verdict"] == "above 3x"
    # Only the anchors' learners: `single` has no row, every glycolytic anchor has its own.
    assert sorted(table["method"].fillna("")) == ["", "coda", "coda-authors", "ncf"]


def test_an_anchor_without_cells_gives_one_not_run_row(tables):
    table, markdown = tables
    selkov = table[table["dataset"] == "selkov"]
    assert len(selkov) == 1
    row = selkov.iloc[0]
    assert row["verdict"] == "not run" and pd.isna(row["method"])
    assert pd.isna(row["ours_mean"]) and pd.isna(row["ratio"])
    assert (row["n_ok"], row["n_cells"]) == (0, 0)
    assert "| selkov | `coda` | mse_id | — | 9.00e-03–1.04e-02 | not run | — | — | not run |" in (
        markdown
    )


def test_markdown_rows_and_header(tables):
    _, markdown = tables
    assert (
        "| glycolytic | `coda` | mse_id | coda | 4.10e-04–4.90e-04 | 6.00e-04 ± 2.00e-04 | 3/4 "
        "| 1.34 | within 2x |" in markdown
    )
    assert (
        "| glycolytic | `ncf` | mse_ood | ncf | 5.90e-04 | 2.00e-03 ± 7.07e-04 | 2/2 | 3.39 |"
        in (markdown)
    )
    assert "geometric middle sqrt(low · high)" in markdown
    assert "`coda` on glycolytic, selkov: CoDA paper, logged runs (setting: width 224)." in (
        markdown
    )
    assert "`ncf` on glycolytic: NCF paper." in markdown


def test_verdict_thresholds_are_relative_to_the_high_end():
    assert verdict(1.0, 1.0) == "at or below"
    assert verdict(1.01, 1.0) == "within 2x"
    assert verdict(2.0, 1.0) == "within 2x"
    assert verdict(2.5, 1.0) == "within 3x"
    assert verdict(3.01, 1.0) == "above 3x"


def test_a_method_without_an_ok_seed_has_no_ratio(tmp_path):
    runs = pd.DataFrame(
        [("selkov", "default", "coda", 0, "diverged", "coda", NAN, NAN)],
        columns=["dataset", "regime", "method", "seed", "status", "learner", "mse_id", "mse_ood"],
    )
    runs.to_csv(tmp_path / "runs.csv", index=False)
    (tmp_path / "anchors.csv").write_text(ANCHORS)
    paths = write_literature(tmp_path / "runs.csv", tmp_path / "anchors.csv", tmp_path)
    row = pd.read_csv(paths["csv"]).set_index("dataset").loc["selkov"]
    assert (row["verdict"], row["n_ok"], row["n_cells"]) == ("no ok seed", 0, 1)
    assert pd.isna(row["ratio"])


def test_missing_anchors_file_is_named_with_the_fix(tmp_path, capsys):
    from mixer.cli import main

    pd.DataFrame(columns=["dataset", "regime", "method", "seed", "status"]).to_csv(
        tmp_path / "runs.csv", index=False
    )
    args = ["literature", "--runs", str(tmp_path / "runs.csv"), "--out-dir", str(tmp_path)]
    assert main([*args, "--anchors", str(tmp_path / "nowhere.csv")]) == 2
    err = capsys.readouterr().err
    assert f"anchors file {tmp_path / 'nowhere.csv'} not found" in err
    assert "Fix: give a CSV with the header 'dataset,learner,metric,low,high" in err
    assert not (tmp_path / "literature.csv").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dataset,learner,metric,low\n", r"lacks the columns \['high', 'source', 'setting'\]"),
        (ANCHORS.replace("mse_ood", "mse"), r"line 3: metric 'mse' is not one of"),
        (ANCHORS.replace("9.0e-3,1.04e-2", "1.04e-2,9.0e-3"), r"line 4: low .* 0 < low <= high"),
        (ANCHORS.replace("5.9e-4,5.9e-4", "0,5.9e-4"), r"line 3: low .* 0 < low <= high"),
        ("", r"is not a readable CSV"),
    ],
)
def test_malformed_anchors_file_is_named(tmp_path, text, message):
    path = tmp_path / "anchors.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"anchors file {path}.*{message}"):
        read_anchors(path)


def test_the_shipped_anchors_are_the_authors_figures():
    from mixer.config import load_config
    from mixer.methods.catalog import learner_names

    anchors = read_anchors(REPO / "config" / "literature.csv")
    figures = {
        a.anchor: (a.dataset, a.learner, a.metric, a.low, a.high) for a in anchors.itertuples()
    }
    assert len(figures) == len(anchors)  # one row per id
    assert figures == {
        "coda-lv-id": ("lotka_volterra", "coda", "mse_id", 1.47e-5, 1.47e-5),
        "coda-lv-ood": ("lotka_volterra", "coda", "mse_ood", 2.19e-5, 2.19e-5),
        "coda-lv-ood-w64": ("lotka_volterra", "coda", "mse_ood", 1.99e-5, 1.99e-5),
        "coda-go-id": ("glycolytic_authors|glycolytic", "coda", "mse_id", 4.12e-4, 4.91e-4),
        "coda-go-id-w90": ("glycolytic_authors|glycolytic", "coda", "mse_id", 5.77e-4, 5.77e-4),
        "coda-go-ood": ("glycolytic_authors|glycolytic", "coda", "mse_ood", 4.23e-4, 4.23e-4),
        "coda-sk-id": ("selkov_authors|selkov", "coda", "mse_id", 8.99e-3, 1.04e-2),
        "coda-sk-ood": ("selkov_authors|selkov", "coda", "mse_ood", 7.84e-3, 8.73e-3),
        "ncf-lv-id": ("lotka_volterra", "ncf", "mse_id", 3.66e-5, 3.66e-5),
        "ncf-go-id": ("glycolytic_authors|glycolytic", "ncf", "mse_id", 5.91e-4, 5.91e-4),
        "ncf-go-ood": ("glycolytic_authors|glycolytic", "ncf", "mse_ood", 5.90e-4, 5.90e-4),
        "ncf-sk-id": ("selkov_authors|selkov", "ncf", "mse_id", 3.37e-4, 3.37e-4),
        "ncf-sk-ood": ("selkov_authors|selkov", "ncf", "mse_ood", 7.45e-2, 7.45e-2),
        "cavia-lv-id": ("lotka_volterra", "cavia", "mse_id", 1.8e-3, 1.8e-3),
        "cavia-lv-ood": ("lotka_volterra", "cavia", "mse_ood", 1.6e-3, 1.6e-3),
        "cavia-go-id": ("glycolytic_authors|glycolytic", "cavia", "mse_id", 1.08e-2, 1.08e-2),
        "cavia-go-ood": ("glycolytic_authors|glycolytic", "cavia", "mse_ood", 3.97e-2, 3.97e-2),
        "cavia-sk-id": ("selkov_authors|selkov", "cavia", "mse_id", 5.36e-2, 5.36e-2),
        "cavia-sk-ood": ("selkov_authors|selkov", "cavia", "mse_ood", 4.45e-2, 4.45e-2),
    }
    # Every figure names the file and line it was read from, and which checkpoint it is.
    assert anchors["source"].str.contains(r"@[0-9a-f]{7} \S+:\d+").all()
    assert (anchors["selection"] != "").all()
    # CoDA's in-domain figures are the lowest test loss over training: said in the table.
    coda_id = anchors[(anchors["learner"] == "coda") & (anchors["metric"] == "mse_id")]
    assert coda_id["selection"].str.contains("chosen on test").all()
    # Names the suite uses: the registry's learners, the default config's datasets.
    assert set(anchors["learner"]) <= set(learner_names())
    # The authors' data design first (config/reproduce.yaml's datasets), then the default's.
    names = {name for both in anchors["dataset"] for name in both.split("|")}
    config = load_config(REPO / "config" / "config.yaml", REPO / "config" / "reproduce.yaml")
    assert names <= set(config["datasets"])


def test_config_key_defaults_to_the_shipped_anchors():
    from mixer.config import validate_config

    path = validate_config({})["literature"]
    assert path == "config/literature.csv" and (REPO / path).is_file()
    with pytest.raises(ConfigError, match="literature"):
        validate_config({"literature": 3})


def test_an_anchor_on_several_datasets_gives_a_row_per_dataset(tmp_path):
    """`a|b`: the authors' data design (a) and the default dataset (b) are both compared,
    each in its own row; other datasets of the same system are not."""
    anchors = ANCHORS.replace("glycolytic,coda", "glycolytic_authors|glycolytic,coda")
    runs = pd.DataFrame(
        [
            ("glycolytic_authors", "coda", 0, 2e-4),
            ("glycolytic", "coda", 0, 8e-4),
            ("glycolytic_sweep", "coda", 0, 1.0),
        ],
        columns=["dataset", "method", "seed", "mse_id"],
    ).assign(regime="default", status="ok", reason="", learner="coda", mse_ood=1.0)
    runs.to_csv(tmp_path / "runs.csv", index=False)
    (tmp_path / "anchors.csv").write_text(anchors)
    paths = write_literature(tmp_path / "runs.csv", tmp_path / "anchors.csv", tmp_path / "out")
    table = pd.read_csv(paths["csv"])
    rows = table[table["dataset"].str.startswith("glycolytic") & (table["learner"] == "coda")]
    assert dict(zip(rows["dataset"], rows["ours_mean"], strict=True)) == {
        "glycolytic": 8e-4,
        "glycolytic_authors": 2e-4,
    }
