"""Why SLURM ended a cell's job, read from the job logs of a cluster run (profiles/slurm).

The slurm executor writes one log per SLURM job: ``{slurm logdir}/rule_{rule}/{wildcards}/
{jobid}.log``, or ``group_{group}_.../{jobid}.log`` for a group job (profiles/slurm puts a cell's
training and evaluation in one). Snakemake deletes the log of a job that succeeded and keeps
the others. A log names the jobs it ran (``--target-jobs train:dataset=...,seed=0`` in its
header) and, when SLURM killed the job, slurmstepd's last words say why:

- ``*** JOB 12 ON node CANCELLED AT 2026-12-05T18:58:45 DUE TO TIME LIMIT ***`` (also
  ``DUE TO PREEMPTION``, ``DUE TO NODE FAILURE``; none: scancel or an administrator);
- ``StepId=3.batch exceeded memory limit (435089408 > 104857600), being killed`` (memory
  sampled by jobacct_gather), or ``Detected 1 oom_kill event`` / ``oom-kill`` (cgroups).

A job killed this way leaves a rule log with no error in it, so without this the tables would
list the cell as ``missing``. Only the newest log naming a cell counts: an older kill followed
by a rerun that failed otherwise is not the cell's reason any more.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

CANCELLED = re.compile(
    r"\*\*\* (?:JOB|STEP) (?P<job>[\d.]+) (?:ON \S+ )?CANCELLED AT (?P<at>\S+)"
    r"(?: DUE TO (?P<due>[A-Z ]+?))?(?:,[^*]*)? \*\*\*"
)
MEMORY = re.compile(r"exceeded memory limit \((?P<used>\d+) > (?P<limit>\d+)\)")
OOM = re.compile(r"oom[-_]kill", re.IGNORECASE)
# A job of a cell as the log's header names it: rule:dataset=...,regime=...,method=...,seed=N
TARGET = re.compile(
    r"\b(?P<rule>\w+):dataset=(?P<dataset>[\w.-]+),regime=(?P<regime>[\w.-]+),"
    r"method=(?P<method>[\w.-]+),seed=(?P<seed>\d+)"
)
FAILED_RULE = re.compile(r"^\s*Error in rule (\w+):", re.MULTILINE)
DUE = {
    "TIME LIMIT": "its time limit was reached (raise the rule's runtime)",
    "PREEMPTION": "it was preempted",
    "NODE FAILURE": "its node failed",
}


def kill_cause(text: str) -> str | None:
    """Why SLURM killed the job whose log is ``text`` (None: it did not)."""
    memory = MEMORY.search(text)
    if memory:
        used, limit = (int(memory[k]) / 2**20 for k in ("used", "limit"))
        return (
            f"it exceeded its memory limit ({used:.0f} MB used, {limit:.0f} MB allowed: "
            "raise the rule's mem_mb)"
        )
    if OOM.search(text):
        return "it ran out of memory (OOM kill: raise the rule's mem_mb)"
    cancelled = CANCELLED.search(text)
    if cancelled is None:
        return None
    due = cancelled["due"]
    cause = DUE.get(due, f"it was cancelled due to {due.lower()}" if due else None)
    return f"{cause or 'it was cancelled (scancel or an administrator)'} at {cancelled['at']}"


class SlurmKills:
    """The newest SLURM log of every cell under a run's log folders, and what it says."""

    def __init__(self, logs_dir: str | Path = "logs"):
        """``logs_dir``: the workflow's log folder; the SLURM logs are read from its ``slurm``
        folder (profiles/slurm: ``slurm-logdir: logs/slurm``) and from the plugin's default,
        ``.snakemake/slurm_logs`` beside it."""
        self.newest: dict[tuple, tuple[float, Path, str, str | None]] = {}
        logs_dir = Path(logs_dir)
        for folder in (logs_dir / "slurm", logs_dir.parent / ".snakemake" / "slurm_logs"):
            if folder.is_dir():
                for log in folder.rglob("*.log"):
                    self._read(log)

    def _read(self, log: Path) -> None:
        try:
            text = log.read_text(errors="replace")
            mtime = log.stat().st_mtime
        except OSError:
            return
        targets = [m.groupdict() for m in TARGET.finditer(text)]
        failed = FAILED_RULE.findall(text)
        cause = kill_cause(text)
        for cell in {(t["dataset"], t["regime"], t["method"], int(t["seed"])) for t in targets}:
            rules = [t["rule"] for t in targets if _cell(t) == cell]
            # The job that was running: the last one whose failure the log reports, else the
            # last one it names (a group's header names all, each step's header its own).
            stage = next((r for r in reversed(failed) if r in rules), rules[-1])
            if cell not in self.newest or mtime >= self.newest[cell][0]:
                self.newest[cell] = (mtime, log, stage, cause)

    def reason(self, cell: dict, newer_than: float | None = None) -> str | None:
        """The cell's reason when SLURM killed its newest job, or None.

        ``newer_than``: the modification time of the cell's own rule log with an error; a kill
        logged before it is not the cell's last failure.
        """
        key = (cell["dataset"], cell["regime"], cell["method"], int(cell["seed"]))
        found = self.newest.get(key)
        if found is None or found[3] is None:
            return None
        mtime, log, stage, cause = found
        if newer_than is not None and mtime < newer_than:
            return None
        return (
            f"{stage}: SLURM ended job {log.stem}: {cause}; SLURM log {_shown(log)} "
            "(the next run retries the cell; training resumes from its checkpoint)"
        )


def _cell(target: dict) -> tuple:
    return target["dataset"], target["regime"], target["method"], int(target["seed"])


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative
