"""Progress of a training run: a tqdm bar on a terminal, a plain log line every few outer steps
otherwise (under Snakemake the job's log file), both on stderr.

The training loops call :func:`report` once per outer step (after its one host sync); it does
nothing unless a caller opened :func:`reporting` around the run (``mixer train`` does).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from contextvars import ContextVar

_REPORTER: ContextVar = ContextVar("progress_reporter", default=None)


class _Reporter:
    def __init__(self, label: str, stream, every: int | None):
        self.label, self.stream, self.every = label, stream, every
        self.bar = None
        self.interactive = getattr(stream, "isatty", lambda: False)()

    def report(self, row: dict, n_outer: int) -> None:
        step = row["outer_step"]
        if self.interactive:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=n_outer, desc=self.label, file=self.stream, unit="step")
                self.bar.update(step - 1)  # a resumed run starts part-way
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{row['loss']:.4g}")
        elif step % (self.every or max(n_outer // 10, 1)) == 0 or step == n_outer:
            print(
                f"{self.label}: outer step {step}/{n_outer}, loss {row['loss']:.6g}, "
                f"{row['seconds']:.1f} s",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextmanager
def reporting(label: str, stream=None, every: int | None = None):
    """Report the progress of the training loops run inside this block: a log line every
    ``every`` outer steps (default: a tenth of the run) and at the last one."""
    reporter = _Reporter(label, stream or sys.stderr, every)
    token = _REPORTER.set(reporter)
    try:
        yield reporter
    finally:
        reporter.close()
        _REPORTER.reset(token)


def report(row: dict, n_outer: int) -> None:
    reporter = _REPORTER.get()
    if reporter is not None:
        reporter.report(row, n_outer)
