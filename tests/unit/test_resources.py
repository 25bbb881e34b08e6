"""A cell's cluster resources come from its measured cost class, and only a matching one."""

from __future__ import annotations

import csv
from pathlib import Path

from mixer.config import load_config, resolve_cell
from mixer.config.resources import (
    DEFAULTS,
    MARGIN,
    SLACK_MIN,
    cell_resources,
    cost_fingerprint,
    read_costs,
)
from mixer.training.allocator import keep_freed_memory

ROOT = Path(__file__).resolve().parents[2]


def lv_cell(method="mixer", outer=None):
    config = load_config(ROOT / "config/config.yaml")
    cell = resolve_cell(config, "lotka_volterra", "default", method, 0)
    if outer is not None:
        cell["training"]["outer_steps"] = outer
    return cell


def write_table(path, cell, **figures):
    row = {"dataset": cell["dataset"], "method": cell["method"], "regime": cell["regime"],
           "s_outer": 12.0, "s_adapt": 0.5, "peak_mb": 2900.0,
           "fingerprint": cost_fingerprint(cell), **figures}  # fmt: skip
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, list(row))
        writer.writeheader()
        writer.writerow(row)
    return read_costs(path)


def test_a_timed_class_gets_its_budget_times_its_measured_step(tmp_path):
    cell = lv_cell(outer=500)
    costs = write_table(tmp_path / "costs.csv", cell)
    got = cell_resources(cell, costs, "train")
    # 500 steps x 12 s = 100 min, x 1.5 = 150, + 10 of slack; memory 2900 x 1.5 -> 4400 MB
    assert got == {"runtime": 150 + SLACK_MIN, "mem_mb": 4400}
    steps = cell["adaptation"]["steps"]
    want = -(-MARGIN * steps * 0.5 // 60) + SLACK_MIN
    assert cell_resources(cell, costs, "evaluate")["runtime"] == want


def test_the_budget_does_not_change_the_fingerprint_but_the_solver_does():
    cell = lv_cell()
    assert cost_fingerprint(cell) == cost_fingerprint(lv_cell(outer=7))
    other = lv_cell()
    other["solver"]["substeps"] += 1
    assert cost_fingerprint(cell) != cost_fingerprint(other)
    # Neither does the schedule or the validation trace: the shipped classes stay measured.
    schedule = lv_cell()
    schedule["training"].update(lr_schedule="constant", val_every=5)
    assert cost_fingerprint(cell) == cost_fingerprint(schedule)
    paper = load_config(ROOT / "config/config.yaml", ROOT / "config/paper.yaml")
    coda = resolve_cell(paper, "lotka_volterra", "default", "coda-baseline", 0)
    row = read_costs(ROOT / "config/costs.csv")[("lotka_volterra", "coda-baseline", "default")]
    assert cost_fingerprint(coda) == row["fingerprint"]


def test_a_stale_or_missing_row_keeps_the_flat_defaults(tmp_path):
    cell = lv_cell()
    costs = write_table(tmp_path / "costs.csv", cell, fingerprint="0123456789ab")
    assert cell_resources(cell, costs, "train") == DEFAULTS["train"]
    assert cell_resources(cell, {}, "evaluate") == DEFAULTS["evaluate"]
    assert read_costs(tmp_path / "absent.csv") == {}


def test_the_allocator_setting_applies_on_glibc():
    import platform

    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
