"""What produced a result: package versions and the git commit if any (the source hash is
:mod:`mixer.records.sources`)."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

import mixer

PACKAGE_DIR = Path(mixer.__file__).resolve().parent


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def versions(*packages: str) -> dict[str, str | None]:
    found = {"python": platform.python_version(), "mixer": mixer.__version__}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
