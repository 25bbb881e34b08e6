"""The figures (mixer.report.plots) on hand-made cells: read from runs.csv and metrics.json only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mixer.errors import ConfigError
from mixer.report.aggregate import write_tables
from mixer.report.plots import FIGURES, gate_matrix, make_figures, routing_trace_frame
from mixer.report.plots.frames import cell_contexts, clear_caches, family_labels, read_runs
from tests.unit.fake_cells import FAMILY, write_cells


@pytest.fixture
def runs_csv(tmp_path):
    root, expected, logs = write_cells(tmp_path)
    clear_caches()
    return write_tables(expected, root / "tables", logs)["runs"]


def _cell(runs_csv, dataset="toy", method="mixer", seed=0):
    runs = pd.read_csv(runs_csv)
    found = runs[(runs["dataset"] == dataset) & (runs["method"] == method)]
    return found[found["seed"] == seed].iloc[0]


def test_every_figure_is_drawn(runs_csv, tmp_path):
    figures = tmp_path / "figures"
    written = make_figures(runs_csv, figures, strict=True)
    assert [p.stem for p in written] == list(FIGURES)
    for path in written:
        assert path.stat().st_size > 5000, path  # a real PNG, not an empty file
    assert not list(figures.glob(".*"))  # no temporary file left


def test_figures_of_nothing_yet(tmp_path):
    paths = write_tables([tmp_path / "runs/a/default/m/seed0/metrics.json"], tmp_path / "t")
    make_figures(paths["runs"], tmp_path / "figures", strict=True)
    assert sorted(p.stem for p in (tmp_path / "figures").glob("*.png")) == sorted(FIGURES)


def test_cell_data_come_from_metrics_json(runs_csv):
    row = _cell(runs_csv)
    data = json.loads(Path(row["run_dir"], "metrics.json").read_text())
    matrix, what = gate_matrix(row)
    assert what == "gate probability"
    np.testing.assert_array_equal(matrix, np.asarray(data["gate_probs"]))
    np.testing.assert_array_equal(cell_contexts(row), np.asarray(data["contexts"]))
    np.testing.assert_array_equal(family_labels(row, len(FAMILY)), FAMILY)
    # The trace ends on the families: the last two outer steps have a routing ARI of 1.
    frame = routing_trace_frame(pd.read_csv(runs_csv))
    mixer = frame[(frame["dataset"] == "toy") & (frame["seed"] == 0)]
    assert mixer["outer step"].tolist() == [1, 2, 3, 4, 5]
    assert mixer["routing ARI"].tolist()[-2:] == [1.0, 1.0]
    assert set(frame["method"]) == {"mixer"}  # single has one expert and no trace


def test_without_gate_or_contexts(runs_csv):
    single = _cell(runs_csv, method="single")
    assert gate_matrix(single) is None and cell_contexts(single) is None
    # A gate-less cell with a routing trace shows its final routing, one-hot.
    row = _cell(runs_csv)
    path = Path(row["run_dir"], "metrics.json")
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "gate_probs": None}))
    clear_caches()
    matrix, what = gate_matrix(row)
    assert what == "routed expert (one-hot)"
    np.testing.assert_array_equal(matrix, np.eye(3)[FAMILY])


def test_no_model_file_is_read(runs_csv):
    """Importing and drawing the figures never imports torch (no model.pt is read)."""
    code = (
        "import sys; from mixer.report.plots import make_figures; "
        f"make_figures({str(runs_csv)!r}, {str(runs_csv.parent / 'figs')!r}, strict=True); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read runs.csv"),
        ("", "cannot read runs.csv"),
        ("dataset,regime,method,seed\ntoy,default,mixer,0\n", "no column status, run_dir"),
    ],
)
def test_unreadable_runs_csv_is_an_error(tmp_path, capsys, content, message):
    from mixer.cli import main

    path = tmp_path / "runs.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message) as caught:
        read_runs(path)
    assert str(path) in str(caught.value)
    assert main(["plot", "--runs", str(path), "--out-dir", str(tmp_path / "figures")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mixer plot: error: ") and message in err
    assert err.count("\n") == 1  # one line
    assert not (tmp_path / "figures").exists()  # no placeholder figures
