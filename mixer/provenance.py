"""What produced a result: package versions, the source hash, the git commit if any."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import mixer

PACKAGE_DIR = Path(mixer.__file__).resolve().parent
# Modules (or subpackages) that only read finished results: a change there must not re-run
# training.
REPORT_MODULES = ("aggregate.py", "summary.py", "literature.py", "claims.py", "plots")


def source_hash(*subpackages: str) -> str:
    """SHA-256 (first 16 hex digits) of the .py sources of ``mixer/<subpackage>`` (or module).

    The workflow puts this in a rule's params so that a change of the code a rule runs
    re-runs the rule (Snakemake does not see changes of imported modules). The hash of the
    whole package leaves out ``REPORT_MODULES`` (tables and figures), which have their own.
    """
    roots = [PACKAGE_DIR / s for s in subpackages] if subpackages else [PACKAGE_DIR]
    digest = hashlib.sha256()
    for root in roots:
        if not root.exists():  # a renamed module must not leave a hash of nothing
            raise ValueError(f"source_hash: {root} does not exist")
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for file in files:
            if not subpackages and file.relative_to(PACKAGE_DIR).parts[0] in REPORT_MODULES:
                continue
            digest.update(str(file.relative_to(PACKAGE_DIR)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


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
