"""A cell whose job SLURM killed is `failed` in the tables, with the cause and the SLURM log."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from mixer.report.aggregate import failure_lines, write_tables
from mixer.report.slurm_logs import SlurmKills, kill_cause
from tests.unit.fake_cells import write_cells

# What slurmstepd writes into a job's log (slurm 22.05, seen on the CI's one-node SLURM).
CANCEL = "slurmstepd-vm: error: *** JOB 34 ON vm CANCELLED AT 2026-12-05T19:23:54 ***"
TIME = "slurmstepd: error: *** JOB 2 ON vm CANCELLED AT 2026-12-05T18:58:45 DUE TO TIME LIMIT ***"
MEMORY = (
    "slurmstepd: error: StepId=3.batch exceeded memory limit (435089408 > 104857600), being killed"
)


def group_log(cell: str, tail: str) -> str:
    """The log of a group job (profiles/slurm: a cell's evaluate and train), as the slurm
    executor's job step writes it: the group's header, the train step's own, then ``tail``."""
    return "\n".join(
        [
            "  Command: .../snakemake/__main__.py --snakefile /w/Snakefile --target-jobs "
            f"evaluate:{cell} train:{cell} --allowed-rules evaluate train --cores all",
            "Job 1: Training mixer on toy (default), seed 3 [gpu=0, mem_mb=4000]",
            f"  Command: .../__main__.py --target-jobs train:{cell} --allowed-rules train",
            "srun: Job step aborted: Waiting up to 7 seconds for job step to finish.",
            tail,
            "Error in rule train:",
            "    jobid: 1",
        ]
    )


@pytest.mark.parametrize(
    ("line", "cause"),
    [
        (CANCEL, "it was cancelled (scancel or an administrator) at 2026-12-05T19:23:54"),
        (TIME, "its time limit was reached (raise the rule's runtime) at 2026-12-05T18:58:45"),
        (MEMORY, "it exceeded its memory limit (415 MB used, 100 MB allowed: raise the rule's"),
        ("slurmstepd: error: Detected 1 oom_kill event in StepId=7.batch.", "ran out of memory"),
        ("*** JOB 9 ON n1 CANCELLED AT 2026-01-01T00:00:00 DUE TO NODE FAILURE, SEE SLURMCTLD LOG "
         "FOR DETAILS ***", "its node failed at 2026-01-01T00:00:00"),
        ("*** STEP 9.0 ON n1 CANCELLED AT 2026-01-01T00:00:00 DUE TO PREEMPTION ***",
         "it was preempted"),
        ("srun: error: n1: task 0: Exited with exit code 1", None),
    ],
)  # fmt: skip
def test_the_cause_of_a_kill_is_read_from_slurmstepds_line(line, cause):
    found = kill_cause(f"start\n{line}\nend")
    assert found == cause if cause is None else cause in found


def test_a_killed_cell_is_failed_with_the_cause_and_its_slurm_log(tmp_path, monkeypatch):
    root, expected, logs = write_cells(tmp_path)
    monkeypatch.chdir(root)  # the reason names the SLURM log relative to the workflow folder
    folder = logs / "slurm" / "group_cell_evaluate_train"
    folder.mkdir(parents=True)
    cell = "dataset=toy,regime=default,method=mixer,seed=3"  # a cell that has no metrics
    (folder / "34.log").write_text(group_log(cell, CANCEL))
    runs = pd.read_csv(write_tables(expected, root / "tables", logs)["runs"])
    row = runs.set_index(["dataset", "method", "seed"]).loc[("toy", "mixer", 3)]
    assert row["status"] == "failed"
    assert row["reason"].startswith("train: SLURM ended job 34: it was cancelled (scancel")
    assert "SLURM log logs/slurm/group_cell_evaluate_train/34.log" in row["reason"]
    assert failure_lines(root / "tables" / "runs.csv") == [
        f"Failed cell {r.run_dir}: {r.reason}"
        for r in runs[runs["status"] == "failed"].itertuples()
    ]
    # Another cell's SLURM log changes nothing for the cells it does not name.
    assert (runs["status"] == "failed").sum() == 2  # and toy/single/seed3's logged error


def test_only_the_newest_failure_of_a_cell_counts(tmp_path):
    root, expected, logs = write_cells(tmp_path)
    folder = logs / "slurm" / "rule_train"
    folder.mkdir(parents=True)
    mixer = "dataset=toy,regime=default,method=mixer,seed=3"
    (folder / "40.log").write_text(group_log(mixer, TIME))
    (folder / "41.log").write_text(group_log(mixer, "mixer train: error: a later failure"))
    os.utime(folder / "40.log", (1000, 1000))
    os.utime(folder / "41.log", (2000, 2000))  # the rerun, not killed by SLURM
    assert SlurmKills(logs).reason({"dataset": "toy", "regime": "default", "method": "mixer",
                                    "seed": 3}) is None  # fmt: skip
    # toy/single/seed3: killed on the cluster, then failed with an error in its own log.
    single = "dataset=toy,regime=default,method=single,seed=3"
    (folder / "42.log").write_text(group_log(single, MEMORY))
    rule_log = logs / "train" / "toy" / "default" / "single" / "seed3.log"
    os.utime(folder / "42.log", (1000, 1000))
    os.utime(rule_log, (2000, 2000))
    runs = pd.read_csv(write_tables(expected, root / "tables", logs)["runs"])
    reasons = runs.set_index(["dataset", "method", "seed"])["reason"]
    assert "SLURM" not in reasons[("toy", "single", 3)]
    assert runs.set_index(["dataset", "method", "seed"]).loc[("toy", "mixer", 3), "status"] == (
        "missing"
    )
    # Killed after its error was logged: the kill is its last failure.
    os.utime(folder / "42.log", (3000, 3000))
    runs = pd.read_csv(write_tables(expected, root / "tables", logs)["runs"])
    reason = runs.set_index(["dataset", "method", "seed"])["reason"][("toy", "single", 3)]
    assert reason.startswith("train: SLURM ended job 42: it exceeded its memory limit")


def test_the_plugins_default_log_folder_is_read_too(tmp_path):
    """Without profiles/slurm's slurm-logdir the logs are in .snakemake/slurm_logs."""
    folder = tmp_path / ".snakemake" / "slurm_logs" / "rule_train" / "toy_default_mixer_3"
    folder.mkdir(parents=True)
    (folder / "7.log").write_text(group_log("dataset=toy,regime=default,method=mixer,seed=3", TIME))
    cell = {"dataset": "toy", "regime": "default", "method": "mixer", "seed": 3}
    reason = SlurmKills(tmp_path / "logs").reason(cell)
    assert reason.startswith("train: SLURM ended job 7: its time limit was reached")
