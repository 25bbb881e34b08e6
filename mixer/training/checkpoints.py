"""A training run's checkpoint: where it is written, and whose it must be to be resumed.

A checkpoint carries the fingerprint of its cell (:mod:`mixer.records.identity`): a run resumes one
only when the fingerprint is its own, so a changed learning rate, seed, budget or dataset
starts over (and says why in the log) instead of continuing someone else's state. The file
holds plain tensors and values and is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from mixer.records.atomic import atomic_write
from mixer.records.identity import differences


class Checkpoint:
    """``path`` to write and resume; ``fingerprint`` None skips the identity check (by hand)."""

    def __init__(self, path, fingerprint: dict | None = None):
        self.path = Path(path)
        self.fingerprint = fingerprint

    def load(self, map_location=None) -> dict | None:
        """The saved state if it exists, is readable and is this run's; else None (said why)."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location=map_location, weights_only=True)
        except Exception as err:  # a torn or foreign file: not worth a failed cell
            return self._start_over(f"it is unreadable ({type(err).__name__})")
        found = state.get("fingerprint") if isinstance(state, dict) else None
        if self.fingerprint is not None and found != self.fingerprint:
            wrong = differences(self.fingerprint, found or {})
            return self._start_over(f"it is of other settings: {'; '.join(wrong)}")
        return state

    def save(self, state: dict) -> None:
        state = {**state, "fingerprint": self.fingerprint}
        atomic_write(self.path, lambda tmp: torch.save(state, tmp))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def _start_over(self, why: str) -> None:
        print(f"not resuming from {self.path}: {why}; starting over", file=sys.stderr, flush=True)
        return None


def as_checkpoint(checkpoint) -> Checkpoint | None:
    """A :class:`Checkpoint` from a Checkpoint, a path (no identity check) or None."""
    if checkpoint is None or isinstance(checkpoint, Checkpoint):
        return checkpoint
    return Checkpoint(checkpoint)
