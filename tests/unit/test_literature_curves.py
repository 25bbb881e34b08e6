"""The authors' learning curves beside our cells: log-scale reading at our step count, the
fair ratio, their end, best-on-val, and the curves file's checks (hand numbers throughout)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from mixer.errors import ConfigError
from mixer.report.literature import read_anchors, write_literature
from mixer.report.literature_curves import (
    curve_at,
    curve_end,
    curves_path,
    log_interpolate,
    read_curves,
)

REPO = Path(__file__).resolve().parents[2]
ANCHORS = """anchor,dataset,learner,metric,low,high,source,setting,selection
go-id,glycolytic,coda,mse_id,1e-4,1e-4,their log,width 224,lowest test loss (chosen on test)
go-ood,glycolytic,coda,mse_ood,2e-4,2e-4,their log,,last adaptation step
"""
# Two runs: run a logs 100 -> 1e-2 and 1000 -> 1e-4; run b stops at 150.
CURVES = """anchor,run,step,native_step,value,source
go-id,a,100,epoch 100,1e-2,log a:10
go-id,a,1000,epoch 1000,1e-4,log a:20
go-id,b,100,epoch 100,4e-2,log b:10
go-id,b,150,epoch 150,3e-2,log b:15
"""


def test_log_interpolate_between_two_logged_points_by_hand():
    steps, values = [100, 1000], [1e-2, 1e-4]
    # log10(200/100) / log10(1000/100) = log10 2; 1e-2 * (1e-2) ** log10 2 = 1e-2 / 4.
    assert log_interpolate(steps, values, 200) == pytest.approx(2.5e-3, rel=1e-12)
    # Halfway in log step is the geometric middle of the values.
    assert log_interpolate(steps, values, math.sqrt(1e5)) == pytest.approx(1e-3, rel=1e-12)
    # Not the straight line in the step (that would give 8.9e-3 at 200).
    assert log_interpolate(steps, values, 200) != pytest.approx(8.9e-3, rel=1e-2)
    # A logged step gives its own value; outside the logged steps nothing is invented.
    assert log_interpolate(steps, values, 1000) == 1e-4
    assert log_interpolate(steps, values, 100) == 1e-2
    assert math.isnan(log_interpolate(steps, values, 99))
    assert math.isnan(log_interpolate(steps, values, 1001))
    assert math.isnan(log_interpolate(steps, values, math.nan))
    assert math.isnan(log_interpolate([], [], 100))


def test_curve_at_takes_the_range_over_the_runs_that_reach_the_step(tmp_path):
    anchors, curves = _files(tmp_path)
    curve = read_curves(curves, read_anchors(anchors))
    # At 120 both runs reach: a 1e-2 * (1e-2) ** log10(1.2), b between 4e-2 and 3e-2.
    low, high, reached, runs = curve_at(curve, 120)
    weight = math.log(1.2) / math.log(1.5)
    assert low == pytest.approx(1e-2 * 1e-2 ** math.log10(1.2), rel=1e-12)
    assert high == pytest.approx(4e-2 * (3e-2 / 4e-2) ** weight, rel=1e-12)
    assert (reached, runs) == (2, 2)
    # At 200 only run a reaches it.
    assert curve_at(curve, 200) == (pytest.approx(2.5e-3, rel=1e-12),) * 2 + (1, 2)
    # Their end: the largest last step, the range of each run's last value.
    assert curve_end(curve) == (1000.0, 1e-4, 3e-2)


def _files(tmp_path, curves=CURVES):
    (tmp_path / "anchors.csv").write_text(ANCHORS)
    (tmp_path / "anchors_curves.csv").write_text(curves)
    return tmp_path / "anchors.csv", tmp_path / "anchors_curves.csv"


def _runs(tmp_path, cells, best=None):
    """runs.csv of glycolytic coda cells (method, seed, status, inner_steps, mse_id)."""
    runs = pd.DataFrame(cells, columns=["method", "seed", "status", "inner_steps", "mse_id"])
    runs.insert(0, "dataset", "glycolytic")
    runs.insert(1, "regime", "default")
    runs["learner"] = "coda"
    runs["mse_ood"] = 4e-4
    if best is not None:
        runs["best_val.mse_id"] = best
    runs.to_csv(tmp_path / "runs.csv", index=False)
    return tmp_path / "runs.csv"


def _write(tmp_path, cells, best=None):
    anchors, _ = _files(tmp_path)
    paths = write_literature(_runs(tmp_path, cells, best), anchors, tmp_path / "out")
    table = pd.read_csv(paths["csv"], keep_default_na=False, na_values=[""])
    return table.set_index(["anchor", "method"]), paths["markdown"].read_text()


def test_fair_ratio_is_ours_over_theirs_at_our_step_count(tmp_path):
    cells = [
        ("coda-authors", 0, "ok", 200, 4e-3),
        ("coda-authors", 1, "ok", 200, 6e-3),
        ("coda-authors", 2, "diverged", 24, math.nan),  # not one of the ok cells' budget
    ]
    table, markdown = _write(tmp_path, cells)
    row = table.loc[("go-id", "coda-authors")]
    assert row["our_steps"] == 200
    # Run a at 200: 2.5e-3; run b ends at 150, before our step count.
    assert row["theirs_at_our_steps_low"] == pytest.approx(2.5e-3, rel=1e-12)
    assert row["theirs_at_our_steps_high"] == pytest.approx(2.5e-3, rel=1e-12)
    assert (row["their_runs_at_our_steps"], row["their_runs"]) == (1, 2)
    assert row["fair_ratio"] == pytest.approx(5e-3 / 2.5e-3, rel=1e-12)
    # The headline ratio is still against the logged figure (their selected checkpoint).
    assert row["ratio"] == pytest.approx(5e-3 / 1e-4, rel=1e-12)
    assert (row["their_end_step"], row["their_end_low"], row["their_end_high"]) == (
        1000,
        1e-4,
        3e-2,
    )
    assert row["n_best_val"] == 0 and math.isnan(row["ours_best_val_mean"])
    assert (
        "| `go-id` | glycolytic | `coda` | mse_id | coda-authors | 200 | 2.50e-03 (1 of 2 runs) "
        "| 5.00e-03 ± 1.41e-03 | not recorded | 2 | 1.00e-04–3.00e-02 at 1,000 "
        "| lowest test loss (chosen on test) |" in markdown
    )
    assert "interpolated on a log scale" in markdown
    # An adaptation figure without a curve says so.
    assert "| `go-ood` | glycolytic | `coda` | mse_ood | coda-authors | 200 | no curve |" in (
        markdown
    )
    assert "(`go-id`): their log (setting: width 224)." in markdown


def test_best_on_val_is_shown_where_the_runs_record_it(tmp_path):
    cells = [("coda", 0, "ok", 120, 2e-2), ("coda", 1, "ok", 120, 4e-2)]
    table, markdown = _write(tmp_path, cells, best=[1e-2, 3e-2])
    row = table.loc[("go-id", "coda")]
    assert row["ours_best_val_mean"] == pytest.approx(2e-2, rel=1e-12)
    assert row["n_best_val"] == 2
    # Both runs reach 120: the fair ratio divides by the geometric middle of their range.
    low, high = row["theirs_at_our_steps_low"], row["theirs_at_our_steps_high"]
    assert row["fair_ratio"] == pytest.approx(3e-2 / math.sqrt(low * high), rel=1e-12)
    assert "| 2.00e-02 (2 seeds) |" in markdown


def test_a_step_count_beyond_their_curve_has_no_fair_ratio(tmp_path):
    table, markdown = _write(tmp_path, [("coda", 0, "ok", 2400, 1e-3)])
    row = table.loc[("go-id", "coda")]
    assert (row["their_runs_at_our_steps"], row["their_runs"]) == (0, 2)
    assert math.isnan(row["fair_ratio"]) and math.isnan(row["theirs_at_our_steps_low"])
    assert "| 2,400 | beyond their last step (1,000) |" in markdown
    # Past their last step, ours is set against their end: 1e-3 over sqrt(1e-4 * 3e-2).
    assert row["end_ratio"] == pytest.approx(1e-3 / math.sqrt(3e-6), rel=1e-12)
    assert "1.00e-04–3.00e-02 at 1,000 (ours / theirs 0.577) |" in markdown


def test_before_their_last_step_there_is_no_end_ratio(tmp_path):
    table, _ = _write(tmp_path, [("coda", 0, "ok", 999, 1e-3)])
    assert math.isnan(table.loc[("go-id", "coda")]["end_ratio"])


def test_anchors_without_ids_keep_the_one_table(tmp_path):
    """An anchors file of the old layout: no second table, the first unchanged."""
    anchors = tmp_path / "plain.csv"
    anchors.write_text(ANCHORS.replace("anchor,", "").replace("go-id,", "").replace("go-ood,", ""))
    paths = write_literature(_runs(tmp_path, [("coda", 0, "ok", 200, 1e-3)]), anchors, tmp_path)
    markdown = paths["markdown"].read_text()
    assert "## At the same number of steps" not in markdown
    assert "| glycolytic | `coda` | mse_id | coda | 1.00e-04 | 1.00e-03 | 1/1 | 10 |" in markdown


def test_the_curves_file_is_found_beside_the_anchors():
    assert curves_path(Path("config/literature.csv")) == Path("config/literature_curves.csv")
    assert curves_path("x/mine.csv") == Path("x/mine_curves.csv")


@pytest.mark.parametrize(
    ("curves", "message"),
    [
        (CURVES.replace("go-id,b,150", "nope,b,150"), r"line 5: anchor 'nope' is not an id"),
        (CURVES.replace("150,epoch 150,3e-2", "150,epoch 150,0"), r"line 5: step .* positive"),
        (CURVES.replace("b,150,", "b,-150,"), r"line 5: step .* positive"),
        (CURVES.replace("b,150,", "b,100,"), r"run 'b' has two values at step 100"),
        ("anchor,run,step,value\n", r"lacks the columns \['native_step', 'source'\]"),
    ],
)
def test_malformed_curves_are_named(tmp_path, curves, message):
    anchors, path = _files(tmp_path, curves)
    with pytest.raises(ConfigError, match=rf"curves file {path}.*{message}"):
        read_curves(path, read_anchors(anchors))


def test_a_given_curves_file_must_exist(tmp_path):
    anchors, _ = _files(tmp_path)
    runs = _runs(tmp_path, [("coda", 0, "ok", 200, 1e-3)])
    with pytest.raises(ConfigError, match=r"curves file .*nowhere\.csv not found"):
        write_literature(runs, anchors, tmp_path, tmp_path / "nowhere.csv")


def test_duplicate_anchor_ids_are_refused(tmp_path):
    path = tmp_path / "anchors.csv"
    path.write_text(ANCHORS.replace("go-ood,", "go-id,"))
    with pytest.raises(ConfigError, match=r"anchor ids \['go-id'\] are not unique"):
        read_anchors(path)


def test_the_shipped_curves_hold_the_authors_logged_values():
    anchors = read_anchors(REPO / "config" / "literature.csv")
    curves = read_curves(REPO / "config" / "literature_curves.csv", anchors)
    values = curves.set_index(["anchor", "run", "step"])["value"]
    # Values quoted in issue 25, read off the logs (file:line in `source`).
    assert values[("coda-go-id", "20240326_114807", 2400)] == pytest.approx(3.64e-3, rel=2e-3)
    assert values[("coda-go-id", "20240326_141140", 2400)] == pytest.approx(3.89e-3, rel=2e-3)
    assert values[("coda-sk-id", "20240324_070442", 2400)] == pytest.approx(1.30e-2, rel=3e-3)
    assert values[("ncf-sk-id", "250225-103033", 2002)] == pytest.approx(1.08e-1, rel=3e-3)
    assert values[("ncf-go-id", "05082024-094138", 2002)] == pytest.approx(6.18e-3, rel=2e-3)
    # Each curve ends at the value of its anchor where the figure is the last model.
    ends = curves.groupby(["anchor", "run"]).tail(1).set_index("anchor")["value"]
    assert ends["ncf-go-id"] == pytest.approx(5.91e-4, rel=2e-3)
    assert ends["ncf-sk-id"] == pytest.approx(3.37e-4, rel=2e-3)
    assert ends["cavia-lv-id"] == pytest.approx(1.8e-3, rel=1e-9)
    assert ends["cavia-lv-ood"] == pytest.approx(1.6e-3, rel=1e-9)
    # A figure chosen as the lowest test value lies at or below every logged value.
    for anchor in ("coda-lv-id", "coda-go-id", "coda-sk-id", "ncf-lv-id"):
        low = anchors.set_index("anchor").loc[anchor, "low"]
        assert curves[curves["anchor"] == anchor]["value"].min() >= low * (1 - 5e-3)
    assert curves["source"].str.match(r"ddrous/\w+@[0-9a-f]{7} \S+:\d+$").all()


def test_learning_curves_figure_draws_the_logged_cells_beside_their_curves(tmp_path):
    """One panel per dataset and method whose cells logged mse_val; the authors' in-domain
    curves of that learner on that dataset beside them; a run without any says so."""
    from mixer.report.plots import learning_curves as figure

    anchors_file, curves_file = _files(tmp_path)
    anchors = read_anchors(anchors_file)
    curves = read_curves(curves_file, anchors)
    rows = []
    for seed in (0, 1):
        run = tmp_path / f"seed{seed}"
        run.mkdir()
        log = "outer_step,inner_steps,loss,mse_val\n1,24,1.0,\n2,48,0.5,0.3\n3,72,0.4,0.2\n"
        (run / "train_log.csv").write_text(log)
        rows.append(("glycolytic", "default", "coda-authors", seed, "ok", "coda", str(run)))
    columns = ["dataset", "regime", "method", "seed", "status", "learner", "run_dir"]
    runs = pd.DataFrame(rows, columns=columns)
    assert figure.train_curve(tmp_path / "seed0")["mse_val"].tolist() == [0.3, 0.2]
    # Only the in-domain anchor's runs a and b: the adaptation anchor has no training curve.
    theirs = figure._their_curves(anchors, curves, "glycolytic", "coda")
    assert [label for label, _, _ in theirs] == ["go-id a", "go-id b"]
    assert figure._their_curves(anchors, curves, "glycolytic", "ncf") == []
    drawn = figure.draw_learning_curves(runs, anchors, curves, tmp_path / "curves.png")
    assert drawn.stat().st_size > 10_000
    # Without logged validation errors the figure is still written, and says why it is empty.
    for seed in (0, 1):
        (tmp_path / f"seed{seed}" / "train_log.csv").write_text("outer_step,loss\n1,1.0\n")
    assert figure.train_curve(tmp_path / "seed0") is None
    empty = figure.draw_learning_curves(runs, anchors, curves, tmp_path / "empty.png")
    assert empty.is_file()
