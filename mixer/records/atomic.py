"""Atomic file writes: a killed job never leaves a file that looks complete (ARCHITECTURE.md).

Every output of the suite is written to a temporary file in its own folder, then renamed over
the target with ``os.replace``, which is atomic on POSIX and Windows file systems. A reader
therefore sees the old file or the new one, never a half-written one.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any


def temporary_path(path: Path) -> Path:
    """A fresh hidden name next to ``path`` that keeps its suffix.

    The suffix is kept because some writers choose the format from it (``savefig``) or append
    their own when it is missing (``np.savez`` adds ``.npz``).
    """
    token = f"{os.getpid()}.{secrets.token_hex(4)}"
    return path.with_name(f".{path.stem}.{token}.tmp{path.suffix}")


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Run ``write(tmp)`` on a temporary path next to ``path``, then rename it to ``path``.

    Creates the parent folder. If ``write`` raises (or is interrupted), the temporary file is
    removed, ``path`` is left as it was and the error propagates. Returns ``path``.

    Example::

        atomic_write(out / "model.pt", lambda tmp: torch.save(state, tmp))
        atomic_write(out / "figure.png", lambda tmp: fig.savefig(tmp, dpi=110))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: str | Path, data: Any, **dumps: Any) -> Path:
    """``json.dumps(data, **dumps)`` plus a final newline, written to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(data, **dumps) + "\n")
